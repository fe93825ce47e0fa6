"""The fleet's Celery queues: one list for the app's routes, the worker CLI, `up` and metrics."""

QUEUES = ("backup", "restore", "audit", "verify", "maintenance")
ALL_QUEUES = ",".join(QUEUES)  # as `celery worker -Q` and `backfleet worker --queues` take them

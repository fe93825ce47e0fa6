"""How Backfleet talks to its broker, shared by the Celery app (tasks/app.py) and the
CLI's sender (tasks/messages.py), so that both publish alike: the connection's options,
the publish retry policy and each queue's declaration.

No Celery here: `backfleet backup` sends its task with kombu alone.
"""

from typing import Any

from kombu.entity import Exchange, Queue

from workers.settings import Settings

# An unreachable broker fails a request within seconds (the API answers 503, the CLI
# exits 3) instead of hanging it; workers keep reconnecting on their own.
FAST_FAIL_RETRIES = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
# Celery's own defaults for what the app does not set, which a sender without the app
# must spell out: broker_connection_timeout, task_default_delivery_mode, event_exchange.
CONNECT_TIMEOUT = 4.0
PERSISTENT = 2
EVENT_EXCHANGE = "celeryev"
# Where Celery's Redis result backend keeps a task's state and announces it (pub/sub).
RESULT_KEY_PREFIX = "celery-task-meta-"
# Celery's READY_STATES: the task will not run again.
READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


def task_queue(name: str) -> Queue:
    """Each queue its own exchange and routing key: a bare Queue(name) would be bound to
    the default exchange with the default key, and every message would then be delivered
    to all five queues."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def visibility_timeout(settings: Settings) -> int:
    """Redis redelivers an unacknowledged message after this: it must outlast the longest
    backup (the settings check BACKUP_TIME_LIMIT < it)."""
    return settings.celery_visibility_timeout


def transport_options(settings: Settings) -> dict[str, Any]:
    """The broker connection's transport options (Celery's broker_transport_options)."""
    visibility = visibility_timeout(settings)
    return {
        "socket_connect_timeout": 5,
        "visibility_timeout": visibility,
        # How often a worker hands back messages whose worker died (kombu >= 5.6 sweeps
        # every interval x throttle seconds); a fraction of the visibility timeout.
        "unacked_restore_interval": max(1, min(10, visibility // 10)),
        "unacked_restore_throttle": max(1, min(10, visibility // 100)),
    }

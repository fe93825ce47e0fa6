"""The Celery app: broker, queues, routes, reliability settings and the beat schedule.

`celery -A workers.app worker|beat|flower` works as Celery users expect. Nothing
here connects to anything: SDK clients and DB engines are made after fork.
"""

from celery import Celery
from celery.signals import worker_process_init
from kombu.entity import Exchange, Queue

from beat_schedule import build_beat_schedule
from workers.catalog.db import dispose_engines
from workers.memory import limit_heap_fragmentation
from workers.settings import get_settings

QUEUES = ("backup", "restore", "audit", "verify", "maintenance")
TASK_ROUTES = {
    "tasks.backup.*": {"queue": "backup"},
    "tasks.restore.*": {"queue": "restore"},
    "tasks.audit.*": {"queue": "audit"},
    "tasks.verify.*": {"queue": "verify"},
    "tasks.retention.*": {"queue": "maintenance"},
}

FAST_FAIL_RETRIES = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}

settings = get_settings()
app = Celery(
    "backfleet",
    broker=settings.broker_url,
    backend=settings.results_url,
    include=["tasks.backup", "tasks.restore", "tasks.retention", "tasks.audit"],
)
app.conf.update(
    # Each queue its own exchange and routing key: a bare Queue(name) would be
    # bound to the default exchange with the default key, and every message
    # would then be delivered to all five queues.
    task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
    task_default_exchange="backup",
    task_default_routing_key="backup",
    task_default_queue="backup",
    task_routes=TASK_ROUTES,
    # A task is acknowledged only when it has finished, and a worker holds one
    # message at a time, so a worker that dies hands its backup back.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # Flower shows every task as it is sent, starts and ends.
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_track_started=True,
    result_expires=settings.celery_result_expires,
    result_extended=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    enable_utc=True,
    broker_connection_retry_on_startup=True,
    # An unreachable broker fails a request within seconds (the API answers 503)
    # instead of hanging it; workers keep reconnecting on their own.
    broker_transport_options={"socket_connect_timeout": 5},
    redis_socket_connect_timeout=5,
    task_publish_retry_policy=FAST_FAIL_RETRIES,
    # Workers also use this policy when storing results: revisit with the
    # Redis-restart fault test (issue 4).
    result_backend_transport_options={"retry_policy": FAST_FAIL_RETRIES},
    beat_schedule=build_beat_schedule(settings),
)


@worker_process_init.connect
def _fresh_connections_after_fork(**_: object) -> None:
    """A forked pool process must not share its parent's database connections."""
    dispose_engines()
    limit_heap_fragmentation()

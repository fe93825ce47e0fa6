"""The Celery app: broker, queues, routes, reliability settings and the beat schedule.

`celery -A tasks.app worker|beat|flower` works as Celery users expect, and so does
the older `celery -A workers.app` (an alias module). Nothing here connects to
anything: SDK clients and DB engines are made after fork.
"""

import logging

from celery import Celery
from celery.signals import (
    before_task_publish,
    task_postrun,
    worker_init,
    worker_process_init,
    worker_ready,
)

from tasks.broker import (
    CONNECT_TIMEOUT,
    EVENT_EXCHANGE,
    FAST_FAIL_RETRIES,
    PERSISTENT,
    task_queue,
    transport_options,
    visibility_timeout,
)
from tasks.memory import (
    freeze_long_lived_objects,
    limit_heap_fragmentation,
    release_free_heap,
)
from tasks.task_labels import label_for_flower
from tasks.time_limits import use_enforcing_pool
from workers.catalog.db import dispose_engines
from workers.fleet import warm_up
from workers.monitoring.redis_checks import eviction_problem
from workers.monitoring.redis_client import redis_py_url
from workers.operations.locks import forget_clients
from workers.queues import QUEUES, TASK_QUEUES
from workers.settings import get_settings

log = logging.getLogger(__name__)
TASK_ROUTES = {task: {"queue": queue} for task, queue in TASK_QUEUES.items()}

settings = get_settings()
VISIBILITY = visibility_timeout(settings)
app = Celery(
    "backfleet",
    broker=settings.broker_url,
    backend=settings.results_url,
    include=[
        "tasks.backup",
        "tasks.restore",
        "tasks.retention",
        "tasks.maintenance",
        "tasks.verify",
        "tasks.alerts",
        "tasks.replicate",
        "tasks.audit",
    ],
)
app.conf.update(
    task_queues=[task_queue(name) for name in QUEUES],  # tasks/broker.py says why
    task_default_exchange="backup",
    task_default_routing_key="backup",
    task_default_queue="backup",
    task_routes=TASK_ROUTES,
    # A task is acknowledged only when it has finished, and a worker holds one
    # message at a time, so a worker that dies hands its backup back (the
    # catalog counts deliveries and fails a job past TASK_MAX_REDELIVERIES).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # Not cancelled on a lost broker connection: measured with Celery 5.7 and a
    # Redis restart (tests/integration/test_fleet_faults.py), cancelling killed
    # the backup and its message was never delivered again. Left running, the
    # task finishes and acknowledges after the reconnect; a copy delivered
    # meanwhile waits on the namespace lock, then finds the backup done.
    worker_cancel_long_running_tasks_on_connection_loss=False,
    # Redis redelivers an unacknowledged message after the visibility timeout
    # (tasks/broker.py), and Celery reads it from each of these places.
    visibility_timeout=VISIBILITY,
    task_soft_time_limit=settings.backup_soft_time_limit,
    task_time_limit=settings.backup_time_limit,
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
    # What the CLI's sender (tasks/messages.py) sends with too: written out, though
    # some are Celery's defaults, so that the two cannot drift apart.
    broker_transport_options=transport_options(settings),
    broker_connection_timeout=CONNECT_TIMEOUT,
    task_default_delivery_mode=PERSISTENT,
    event_exchange=EVENT_EXCHANGE,
    redis_socket_connect_timeout=5,
    task_publish_retry_policy=FAST_FAIL_RETRIES,
    # Workers use this policy too: a result that cannot be stored is only a
    # lost status line for Flower, since the catalog holds the truth.
    result_backend_transport_options={
        "retry_policy": FAST_FAIL_RETRIES,
        "visibility_timeout": VISIBILITY,
    },
    # beat_schedule: built by tasks.beat_scheduler when beat starts (only beat reads it).
    # One active beat however many run: RedBeat keeps the schedule in Redis
    # behind a lock; a standby takes over within lock timeout + loop interval.
    beat_scheduler="tasks.beat_scheduler:ResilientRedBeatScheduler",
    redbeat_redis_url=redis_py_url(settings.broker_url),  # RedBeat knows no redis+socket://
    redbeat_key_prefix="backfleet:redbeat",
    redbeat_lock_timeout=settings.beat_lock_timeout,
    redbeat_redis_options={"socket_connect_timeout": 5, "socket_timeout": 10},
    beat_max_loop_interval=max(1, settings.beat_lock_timeout // 3),
)


# Every task message is labelled as it is published (tasks/task_labels.py).
before_task_publish.connect(label_for_flower, weak=False)


@worker_init.connect  # sent after the worker has imported the `include` modules above
def _prepare_the_pool(sender: object, **_: object) -> None:
    """A prefork pool's children keep the parent's long-lived objects shared (tasks/memory.py).
    A threads pool runs its tasks in this process, under Backfleet's own time limits
    (tasks/time_limits.py), so this process is prepared as a pool child would be."""
    if use_enforcing_pool(sender):
        limit_heap_fragmentation()
        warm_up()
    freeze_long_lived_objects()


@worker_process_init.connect  # prefork's children (and the solo pool's one process)
def _fresh_connections_after_fork(**_: object) -> None:
    """A forked pool process must not share its parent's database connections; it loads
    what its first task needs now, not while a user waits (workers.fleet.warm_up)."""
    dispose_engines()
    forget_clients()
    limit_heap_fragmentation()
    warm_up()
    freeze_long_lived_objects()


@task_postrun.connect
def _give_back_freed_memory(**_: object) -> None:
    """An idle worker should not keep the last backup's buffers (tasks/memory.py)."""
    release_free_heap()


@worker_ready.connect
def _warn_if_redis_may_evict(**_: object) -> None:
    problem = eviction_problem(settings.broker_url)
    if problem:
        log.error("%s", problem)

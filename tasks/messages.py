"""Sending a task as Celery's `send_task` does, with kombu alone: what `backfleet backup`
uses, so that a request starts neither Celery's app nor what tasks/app.py loads with it
(the catalog's engine, the fleet's warm-up, the Redis checks).

The message is Celery's task protocol 2, byte for byte what `app.send_task(name,
kwargs=..., queue=...)` publishes from a process that is not a worker (the same headers,
properties, body and routing, the label of tasks/task_labels.py), followed by the
`task-sent` event Flower shows. tests/integration/test_task_messages.py sends one each
way and compares them, so a Celery upgrade that changes the protocol is noticed.
"""

import logging
import os
import socket
import time
from typing import Any

from kombu.common import oid_from
from kombu.connection import Connection
from kombu.entity import Exchange
from kombu.messaging import Producer
from kombu.utils.uuid import uuid

from tasks.broker import (
    CONNECT_TIMEOUT,
    EVENT_EXCHANGE,
    FAST_FAIL_RETRIES,
    PERSISTENT,
    task_queue,
    transport_options,
)
from tasks.task_labels import label_for_flower
from workers.settings import Settings, get_settings

log = logging.getLogger(__name__)
TRANSIENT = 1  # Celery's event dispatcher publishes its events non-persistent


def send_task(task: str, kwargs: dict[str, object], queue: str) -> str:
    """(task name, kwargs, queue) -> task id, as workers.operations.jobs.Enqueue takes it."""
    return publish_task(get_settings(), task, kwargs, queue)


def publish_task(settings: Settings, task: str, kwargs: dict[str, object], queue: str) -> str:
    """Publish `task` on `queue` and announce it to Flower; the task id.

    Raises (kombu's OperationalError) when the broker does not take the message within
    FAST_FAIL_RETRIES. The event after it is best effort, as in Celery: a broker gone
    between the two loses only Flower's `task-sent` line.
    """
    task_id = uuid()
    origin = f"gen{os.getpid()}@{socket.gethostname()}"  # celery.utils.anon_nodename()
    body = ((), kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
    headers = task_headers(task, task_id, origin)
    label_for_flower(body=body, headers=headers)
    declared = task_queue(queue)
    connection = Connection(
        settings.broker_url,
        ssl=False,
        heartbeat=None,
        transport_options=transport_options(settings),
        connect_timeout=CONNECT_TIMEOUT,
    )
    try:
        with connection._reraise_as_library_errors():
            producer = Producer(connection)
            # Celery turns a direct exchange into the default one, routed by queue name.
            producer.publish(
                body,
                exchange="",
                routing_key=queue,
                serializer="json",
                compression=None,
                retry=True,
                retry_policy=dict(FAST_FAIL_RETRIES),
                delivery_mode=PERSISTENT,
                declare=[declared],
                headers=headers,
                timeout=None,
                confirm_timeout=None,
                correlation_id=task_id,
                reply_to=oid_from(connection, threads=True),  # Celery's app.thread_oid
            )
        try:
            producer.publish(
                sent_event(task, task_id, origin, headers, queue),
                routing_key="task.sent",
                exchange=EVENT_EXCHANGE,
                retry=True,
                retry_policy=dict(FAST_FAIL_RETRIES),
                declare=[Exchange(EVENT_EXCHANGE, type="fanout")],  # Celery's, on Redis
                serializer="json",
                headers={"hostname": origin},
                delivery_mode=TRANSIENT,
            )
        except Exception as exc:
            log.debug("the task-sent event of %s was not published: %s", task_id, exc)
    finally:
        connection.release()
    return task_id


def task_headers(task: str, task_id: str, origin: str) -> dict[str, Any]:
    """Celery's protocol 2 headers (celery.app.amqp.as_task_v2) for a task sent by name
    from outside a worker: no parent, no ETA, no expiry, no time limits of its own."""
    return {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": "()",
        "kwargsrepr": "{}",
        "origin": origin,
        "ignore_result": None,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }


def sent_event(
    task: str, task_id: str, origin: str, headers: dict[str, Any], queue: str
) -> dict[str, Any]:
    """The `task-sent` event (celery.events.Event) a process that never sent one before
    publishes: its logical clock at 1. Its args are the message's labels (Celery's are
    the kwargs' repr before labelling, which is the same text for a backup's)."""
    return {
        "hostname": origin,
        "utcoffset": _utcoffset(),
        "pid": os.getpid(),
        "clock": 1,
        "uuid": task_id,
        "root_id": task_id,
        "parent_id": None,
        "name": task,
        "args": headers["argsrepr"],
        "kwargs": headers["kwargsrepr"],
        "retries": 0,
        "eta": None,
        "expires": None,
        "queue": queue,
        "exchange": "",
        "routing_key": queue,
        "timestamp": time.time(),
        "type": "task-sent",
    }


def _utcoffset() -> float:
    """celery.utils.time.utcoffset: hours west of UTC, as a float."""
    return (time.altzone if time.localtime().tm_isdst else time.timezone) / 3600

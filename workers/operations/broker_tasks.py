"""Which backup and restore tasks the broker still holds, read from kombu's Redis layout.

kombu's Redis transport keeps a queue as a list under the queue's name (one
list per priority step, `<queue>\\x06\\x16<priority>` beyond the first) and a
delivered, unacknowledged message in the hash `unacked` until it is
acknowledged; after the visibility timeout a worker puts it back on its list.
A task is "in the broker" if its message is in either place: it will run (or
run again). With late acknowledgement a running task's message stays in
`unacked` until it ends, so a worker killed mid-task leaves it there.

A message is a JSON envelope; Celery's protocol 2 puts the task id in its
headers and `[args, kwargs, embed]` in its base64 body. Both are read, so a
row whose task id was never recorded (the API died before writing it) is
still recognised by the namespace and timestamp (or restore id) it names.
"""

import base64
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kombu.transport.redis import PRIORITY_STEPS, Channel

from workers.monitoring.redis_client import SCAN, redis_client
from workers.queues import QUEUES, RUN_BACKUP, RUN_RESTORE

log = logging.getLogger(__name__)


@dataclass
class BrokerTasks:
    ids: set[str] = field(default_factory=set)
    backups: set[tuple[str, str]] = field(default_factory=set)  # (namespace, timestamp)
    restores: set[int] = field(default_factory=set)

    def has_backup(self, task_id: str | None, namespace: str, timestamp: str) -> bool:
        return (task_id is not None and task_id in self.ids) or (
            namespace,
            timestamp,
        ) in self.backups

    def has_restore(self, task_id: str | None, restore_id: int) -> bool:
        return (task_id is not None and task_id in self.ids) or restore_id in self.restores


def queue_keys(queues: Iterable[str] = QUEUES) -> list[str]:
    """Every list kombu may keep a queue's messages in (one per priority step)."""
    return [
        queue if not step else f"{queue}{Channel.sep}{step}"
        for queue in queues
        for step in PRIORITY_STEPS
    ]


def tasks_in_broker(broker_url: str) -> BrokerTasks:
    """Every task message queued or delivered-but-unacknowledged, at one moment."""
    client = redis_client(broker_url, SCAN)
    try:
        with client.pipeline(transaction=True) as pipe:  # one consistent snapshot
            for key in queue_keys():
                pipe.lrange(key, 0, -1)
            pipe.hvals(Channel.unacked_key)
            *lists, unacked = pipe.execute()
    finally:
        client.close()
    found = BrokerTasks()
    for raw in [item for items in lists for item in items]:
        _note(found, _loads(raw))
    for raw in unacked:  # [message, exchange, routing key]
        entry = _loads(raw)
        _note(found, entry[0] if isinstance(entry, list) and entry else None)
    return found


def _loads(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _note(found: BrokerTasks, message: Any) -> None:
    if not isinstance(message, dict):
        return
    headers = message.get("headers") or {}
    if task_id := headers.get("id"):
        found.ids.add(str(task_id))
    kwargs = _kwargs(message)
    task = str(headers.get("task") or "")
    if task == RUN_BACKUP and kwargs.get("timestamp"):
        found.backups.add((str(kwargs.get("namespace") or ""), str(kwargs["timestamp"])))
    elif task == RUN_RESTORE and isinstance(kwargs.get("restore_id"), int):
        found.restores.add(kwargs["restore_id"])


def _kwargs(message: dict[str, Any]) -> dict[str, Any]:
    try:
        body = message.get("body") or ""
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        decoded = json.loads(body)
    except (ValueError, TypeError):
        return {}
    if isinstance(decoded, list) and len(decoded) > 1 and isinstance(decoded[1], dict):
        return decoded[1]
    return {}

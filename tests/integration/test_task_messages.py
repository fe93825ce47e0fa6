"""`backfleet backup` sends its task with kombu alone (tasks/messages.py): the message and
its `task-sent` event must be what Celery's `send_task` publishes, on a real Redis, so
that workers, Flower and its labels see no difference. Only ids, the process and the
clock may differ."""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
KWARGS = {"namespace": "app", "timestamp": "2026-12-07t23-20-00"}
SEND = """
import sys
from {module} import {function} as send
print(send("tasks.backup.run_backup", {kwargs!r}, "backup"))
"""
# Differ from one message to the next by nature.
VOLATILE = {"id", "root_id", "correlation_id", "reply_to", "delivery_tag", "origin", "uuid"}
VOLATILE_EVENT = VOLATILE | {"hostname", "pid", "timestamp"}


def send(url: str, module: str, function: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BROKER_URL": url}
    code = SEND.format(module=module, function=function, kwargs=KWARGS)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def decoded(raw: bytes) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def without(value: Any, volatile: set[str]) -> Any:
    """The value with the volatile keys' values blanked, key order kept."""
    if isinstance(value, dict):
        return [(k, None if k in volatile else without(v, volatile)) for k, v in value.items()]
    if isinstance(value, list):
        return [without(item, volatile) for item in value]
    return value


def test_the_cli_publishes_what_celery_publishes(redis_server: Any) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    events = client.pubsub()
    events.psubscribe("*celeryev*")
    events.get_message(timeout=5)  # the subscription's confirmation

    celery_id = send(redis_server.url, "tasks.enqueue", "celery_enqueue")
    bindings = {key: client.smembers(key) for key in client.keys("_kombu.binding*")}
    client.delete(*bindings)  # the CLI's sender must declare the queue itself
    cli_id = send(redis_server.url, "tasks.messages", "send_task")

    assert {key: client.smembers(key) for key in client.keys("_kombu.binding*")} == bindings
    assert bindings  # the queue was declared, so a worker started later finds the message
    queued = [decoded(raw) for raw in reversed(client.lrange("backup", 0, -1))]
    assert [message["headers"]["id"] for message in queued] == [celery_id, cli_id]
    celery_message, cli_message = queued
    assert without(cli_message, VOLATILE) == without(celery_message, VOLATILE)
    assert cli_message["headers"]["root_id"] == cli_message["properties"]["correlation_id"]
    assert cli_message["headers"]["origin"].startswith("gen")
    assert cli_message["headers"]["kwargsrepr"] == repr(KWARGS)  # Flower's label

    published = []
    while (message := events.get_message(timeout=5)) is not None:
        if message["type"] == "pmessage":
            published.append((message["channel"], decoded(message["data"])))
    assert [channel for channel, _ in published] == [b"/0.celeryev/task.sent"] * 2
    (_, celery_event), (_, cli_event) = published
    assert without(cli_event, VOLATILE_EVENT) == without(celery_event, VOLATILE_EVENT)
    assert cli_event["body"]["uuid"] == cli_id
    assert cli_event["headers"]["hostname"] == cli_event["body"]["hostname"]

"""The label is in the message a worker receives (and reports to Flower), on a real Redis."""

import base64
import json
from typing import Any

import pytest
import redis

from tasks.app import app

pytestmark = pytest.mark.integration


def published_headers(redis_url: str, queue: str) -> dict[str, Any]:
    raw = redis.Redis.from_url(redis_url).lpop(queue)
    assert raw is not None, f"nothing in queue {queue}"
    message = json.loads(raw)
    json.loads(base64.b64decode(message["body"]))  # the body is intact
    return message["headers"]  # type: ignore[no-any-return]


def test_restore_and_scheduled_backup_messages_carry_their_labels(redis_server: Any) -> None:
    redis.Redis.from_url(redis_server.url).flushdb()
    with app.connection_for_write(redis_server.url) as connection:
        for declared in app.amqp.queues.values():
            declared.bind(connection.default_channel).declare()
        app.send_task(
            "tasks.restore.run_restore",
            kwargs={
                "restore_id": 3,
                "namespace": "app",
                "source_namespace": "old",
                "timestamp": "2026-11-21t22-00-00",
            },
            connection=connection,
        )
        # as beat sends a scheduled backup: the namespace only
        app.send_task("tasks.backup.run_backup", kwargs={"namespace": "app"}, connection=connection)
    restore = published_headers(redis_server.url, "restore")
    assert restore["task"] == "tasks.restore.run_restore"
    assert restore["kwargsrepr"] == (
        "{'namespace': 'app', 'source_namespace': 'old', 'timestamp': '2026-11-21t22-00-00', "
        "'restore_id': 3}"
    )
    backup = published_headers(redis_server.url, "backup")
    assert backup["kwargsrepr"].startswith("{'namespace': 'app', 'sent_at': '20")
    assert backup["argsrepr"] == "()"

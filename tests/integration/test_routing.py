"""Each task lands in its own queue, and only there (checked in a real Redis)."""

from typing import Any

import pytest
import redis

from tasks.app import QUEUES, app

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("tasks.backup.run_backup", "backup"),
        ("tasks.restore.run_restore", "restore"),
        ("tasks.audit.flush_user_events", "audit"),
        ("tasks.verify.verify_backups", "verify"),
        ("tasks.retention.apply_retention", "maintenance"),
        ("tasks.verify.test_restore", "verify"),
        ("tasks.alerts.check_staleness", "maintenance"),
        ("tasks.replicate.copy_to_secondary", "maintenance"),
        ("tasks.maintenance.reconcile", "maintenance"),
    ],
)
def test_a_task_is_delivered_to_exactly_its_queue(redis_server: Any, task: str, queue: str) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    with app.connection_for_write(redis_server.url) as connection:
        # Declare every queue, as a worker consuming all of them would.
        for declared in app.amqp.queues.values():
            declared.bind(connection.default_channel).declare()
        app.send_task(task, kwargs={}, connection=connection)  # routed by name, as beat does
    lengths = {name: client.llen(name) for name in QUEUES}
    assert lengths == {name: int(name == queue) for name in QUEUES}


@pytest.mark.parametrize("queue", QUEUES)
def test_each_queue_binding_reaches_only_that_queue(redis_server: Any, queue: str) -> None:
    """Publishing through a queue's own exchange and key must not fan out to the others."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    with app.connection_for_write(redis_server.url) as connection:
        channel = connection.default_channel
        for declared in app.amqp.queues.values():
            declared.bind(channel).declare()
        target = app.amqp.queues[queue]
        connection.Producer(channel).publish(
            {"probe": True}, exchange=target.exchange, routing_key=target.routing_key
        )
    assert {name: client.llen(name) for name in QUEUES} == {n: int(n == queue) for n in QUEUES}

"""Redis-side guards: eviction is reported, and beat catches up at most once after downtime."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from workers.errors import ConfigError
from workers.monitoring.checks import check_broker
from workers.monitoring.redis_checks import eviction_problem
from workers.timestamps import parse_cron

pytestmark = pytest.mark.integration


@pytest.fixture
def evicting_redis(redis_server: Any) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    before = client.config_get("maxmemory-policy")["maxmemory-policy"]
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        yield redis_server.url
    finally:
        client.config_set("maxmemory-policy", before)


def test_an_evicting_redis_is_named_clearly(evicting_redis: str) -> None:
    problem = eviction_problem(evicting_redis)
    assert problem is not None
    assert "allkeys-lru" in problem and "maxmemory-policy noeviction" in problem
    with pytest.raises(ConfigError, match="allkeys-lru"):
        check_broker(evicting_redis)


def test_a_noeviction_redis_passes(redis_server: Any) -> None:
    redis.Redis.from_url(redis_server.url).config_set("maxmemory-policy", "noeviction")
    assert eviction_problem(redis_server.url) is None


def test_an_unreachable_redis_is_reported_without_its_password() -> None:
    problem = eviction_problem("redis://:s3cret-pw@127.0.0.1:1/0")
    assert problem is not None and "s3cret-pw" not in problem


def test_after_beat_downtime_an_entry_catches_up_once(redis_server: Any) -> None:
    from tasks.app import app

    saved = {name: app.conf[name] for name in ("redbeat_redis_url", "redbeat_key_prefix")}
    app.conf.update(redbeat_redis_url=redis_server.url, redbeat_key_prefix="catchup-test")
    vars(app).pop("redbeat_conf", None)  # RedBeat caches its view of the config on the app
    try:
        _catch_up_once(app)
    finally:
        app.conf.update(saved)
        vars(app).pop("redbeat_conf", None)


def _catch_up_once(app: Any) -> None:
    from redbeat import RedBeatSchedulerEntry

    hourly = parse_cron("0 * * * *")
    five_hours_ago = datetime.now(UTC) - timedelta(hours=5)
    entry = RedBeatSchedulerEntry(
        "catchup",
        "tasks.retention.abort_stale_uploads",
        hourly,
        app=app,
        last_run_at=five_hours_ago,
    )
    entry.save()
    due, _ = entry.is_due()
    assert due  # five runs were missed: one catch-up
    after = entry.next()  # what beat does when it sends it
    due_again, wait = after.is_due()
    assert not due_again and 0 < wait <= 3600  # the next one is the next hour, not a backlog
    entry.delete()

"""The namespace lock on a real Redis: exclusive, kept alive, never released by a stale holder."""

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from workers.operations.locks import PREFIX, LockLost, NamespaceBusy, NamespaceLock

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_server: Any) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    for key in connection.scan_iter(PREFIX + "*"):
        connection.delete(key)
    connection.close()


def test_a_second_holder_is_refused_and_told_who_holds_it(client: redis.Redis) -> None:
    with NamespaceLock(client, "app", label="backup 2023-02-02t17-03-15", ttl=30):
        other = NamespaceLock(client, "app", label="restore of x", ttl=30)
        with pytest.raises(NamespaceBusy, match="busy with backup 2023-02-02t17-03-15"):
            other.acquire()
        # Another namespace is free.
        with NamespaceLock(client, "team-b", label="backup y", ttl=30):
            pass
    with NamespaceLock(client, "app", label="restore of x", ttl=30):  # released: free again
        pass


@pytest.mark.timeout(30)
def test_the_heartbeat_keeps_a_long_job_s_lock_past_its_ttl(client: redis.Redis) -> None:
    with NamespaceLock(client, "app", label="backup long", ttl=3) as lock:
        time.sleep(5)  # longer than the TTL
        assert not lock.lost.is_set()
        with pytest.raises(NamespaceBusy):
            NamespaceLock(client, "app", label="backup other", ttl=3).acquire()


@pytest.mark.timeout(30)
def test_a_stale_holder_never_releases_a_newer_lock(client: redis.Redis) -> None:
    stale = NamespaceLock(client, "app", label="backup old", ttl=3)
    stale.acquire()
    stale._stop.set()  # its heartbeat dies (a frozen process), the lock expires
    time.sleep(3.5)
    newer = NamespaceLock(client, "app", label="backup new", ttl=30)
    newer.acquire()
    stale.release()  # compare-and-delete: not its token any more
    assert newer.holder() == "backup new"
    newer.release()
    assert newer.holder() is None


@pytest.mark.timeout(30)
def test_a_lock_redis_lost_is_taken_again_and_a_lock_taken_over_is_reported(
    client: redis.Redis,
) -> None:
    with NamespaceLock(client, "app", label="backup a", ttl=3) as lock:
        client.delete(PREFIX + "app")  # as a Redis restart without persistence would
        time.sleep(1.5)
        assert lock.holder() == "backup a" and not lock.lost.is_set()

        client.set(PREFIX + "app", "backup intruder|token", ex=30)  # someone else has it
        deadline = time.monotonic() + 5
        while not lock.lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lock.lost.is_set()
    assert client.get(PREFIX + "app") == b"backup intruder|token"  # not released by us


@pytest.mark.timeout(30)
def test_a_strict_lock_counts_a_vanished_key_as_lost_and_confirm_says_so(
    client: redis.Redis,
) -> None:
    """A restore's lock: a key that vanished may have let another job in, so it is not re-taken."""
    with NamespaceLock(client, "app", label="restore of x", ttl=3, strict=True) as lock:
        lock.confirm()  # held: no error
        client.delete(PREFIX + "app")
        with pytest.raises(LockLost, match="lock of namespace app was lost: it expired"):
            lock.confirm()
        assert lock.lost.is_set()
        time.sleep(1.5)  # nor does the heartbeat take it again
        assert client.get(PREFIX + "app") is None


@pytest.mark.timeout(30)
def test_confirm_reports_a_lock_another_holder_took(client: redis.Redis) -> None:
    with NamespaceLock(client, "app", label="restore of x", ttl=30, strict=True) as lock:
        client.set(PREFIX + "app", "backup intruder|token", ex=30)
        with pytest.raises(LockLost, match="taken by backup intruder"):
            lock.confirm()
    assert client.get(PREFIX + "app") == b"backup intruder|token"

"""One job per namespace: a Redis lock with a token, a heartbeat and a safe release.

redis-py's Lock does the hard parts: SET NX with a random token, extend and
release as Lua scripts that compare the token first, so a holder whose lock
expired can never release (or extend) a newer holder's lock. This module adds
a heartbeat thread that keeps the lock alive while a backup runs for hours,
re-takes it if Redis lost it (a restart without persistence), and notes when
another holder took it, so the job stops before it records anything.

A strict lock (restores) never re-takes: a key that vanished may have let
another job in meanwhile, so any loss counts, and `confirm()` checks the key
live before the job commits a change it cannot undo.
"""

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from types import TracebackType

import redis
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from workers.errors import BackfleetError
from workers.monitoring.redis_client import LOCKS, redis_client
from workers.settings import Settings

log = logging.getLogger(__name__)
PREFIX = "backfleet:lock:namespace:"
# Held while retention deletes in a namespace's store prefix (workers/operations/retention/).
RETENTION_PREFIX = "backfleet:lock:retention:"
# One key per reader without a catalog row (a test restore): `<namespace>/<timestamp>/<id>`.
READING_PREFIX = "backfleet:reading:"
# Held while a retention pass moves one kept backup colder: `<namespace>/<timestamp>`. The
# move phase holds no retention lock (a long one must not hold off restores, second
# review finding 7): a mover sets this, then looks for readers; a reader registers, then
# waits while this is set. Each sees the other, whichever comes first.
MOVING_PREFIX = "backfleet:moving:"
# Held by the move phase of a retention pass, so two passes do not move at once.
UPKEEP_PREFIX = "backfleet:lock:upkeep:"


@cache
def _client(url: str) -> redis.Redis:
    # One client per process and URL, made on first use (after fork), never at import.
    return redis_client(url, LOCKS)


def lock_client(url: str) -> redis.Redis:
    return _client(url)


def forget_clients() -> None:
    """Drop the clients a forked child inherited from its parent."""
    _client.cache_clear()


def namespace_lock(
    settings: Settings, namespace: str, *, label: str, strict: bool = False
) -> "NamespaceLock":
    """The lock a backup or restore of `namespace` holds while it runs."""
    client = lock_client(settings.locks_url)
    return NamespaceLock(
        client, namespace, label=label, ttl=settings.backup_lock_ttl, strict=strict
    )


def retention_lock(settings: Settings, namespace: str, *, label: str) -> "NamespaceLock":
    """The lock retention holds while it deletes backups of `namespace`.

    See workers/operations/retention/ for who waits on it and why.
    """
    client = lock_client(settings.locks_url)
    return NamespaceLock(
        client, namespace, label=label, ttl=settings.backup_lock_ttl, prefix=RETENTION_PREFIX
    )


def upkeep_lock(settings: Settings, namespace: str) -> "NamespaceLock":
    """The lock of a retention pass's moves colder and lock extensions of `namespace`."""
    client = lock_client(settings.locks_url)
    return NamespaceLock(
        client,
        namespace,
        label="retention upkeep",
        ttl=settings.backup_lock_ttl,
        prefix=UPKEEP_PREFIX,
    )


def moving_mark(settings: Settings, namespace: str, timestamp: str) -> "NamespaceLock":
    """The key a retention pass holds while it moves one backup colder (MOVING_PREFIX)."""
    client = lock_client(settings.locks_url)
    return NamespaceLock(
        client,
        f"{namespace}/{timestamp}",
        label="moving",
        ttl=settings.backup_lock_ttl,
        prefix=MOVING_PREFIX,
    )


def wait_while_moving(settings: Settings, namespace: str, timestamp: str, *, wait: float) -> None:
    """Return once no retention pass moves the backup colder (polling up to `wait` s), else
    NamespaceBusy. A reader calls it after it registered (restore row, reading mark)."""
    deadline = time.monotonic() + wait
    key = f"{namespace}/{timestamp}"
    while lock_holder(settings, key, prefix=MOVING_PREFIX) is not None:
        if time.monotonic() >= deadline:
            raise NamespaceBusy(namespace, f"a retention pass moving {timestamp} colder")
        time.sleep(1)


def reading_mark(settings: Settings, namespace: str, timestamp: str) -> "NamespaceLock":
    """A key that says a backup is being read, kept alive while held; readers share nothing."""
    client = lock_client(settings.locks_url)
    name = f"{namespace}/{timestamp}/{uuid.uuid4().hex}"
    return NamespaceLock(
        client, name, label="reading", ttl=settings.backup_lock_ttl, prefix=READING_PREFIX
    )


@contextmanager
def being_read(
    settings: Settings, namespace: str, timestamp: str, *, wait: float
) -> Iterator[None]:
    """Hold a reading mark on a backup for the block, after waiting (up to `wait` s) for a
    retention pass of its namespace to end: retention then neither deletes it nor moves
    it to another storage class under the reader (nor does one that is moving it
    meanwhile: the wait covers its move, MOVING_PREFIX). Without Redis the block runs unmarked
    (retention cannot take its own lock then either). NamespaceBusy if the pass goes on."""
    mark = reading_mark(settings, namespace, timestamp)
    try:
        mark.acquire()
    except RedisError as exc:
        log.warning("could not mark %s/%s as being read: %s", namespace, timestamp, exc)
        yield
        return
    try:
        wait_while_retention(settings, namespace, wait=wait)
        wait_while_moving(settings, namespace, timestamp, wait=wait)
        yield
    finally:
        mark.release()


def backups_being_read(settings: Settings, namespace: str) -> set[str]:
    """The timestamps of `namespace` that a reading mark is held on."""
    client = lock_client(settings.locks_url)
    pattern = READING_PREFIX + _glob_escape(namespace) + "/*"
    found = set()
    for key in client.scan_iter(match=pattern, count=500):
        text = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
        found.add(text.removeprefix(READING_PREFIX).split("/")[1])
    return found


def wait_while_retention(settings: Settings, namespace: str, *, wait: float = 0) -> None:
    """Return once no retention pass holds `namespace` (polling up to `wait` s), else
    raise NamespaceBusy. A reader calls it after it registered (restore row, reading mark)."""
    deadline = time.monotonic() + wait
    while (holder := lock_holder(settings, namespace, prefix=RETENTION_PREFIX)) is not None:
        if time.monotonic() >= deadline:
            raise NamespaceBusy(namespace, holder)
        time.sleep(1)


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def lock_holder(settings: Settings, namespace: str, *, prefix: str = PREFIX) -> str | None:
    """The label of whoever holds the namespace's lock (or its retention lock), or None."""
    value = lock_client(settings.locks_url).get(prefix + namespace)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return str(value).split("|", 1)[0] if value else None


class NamespaceBusy(Exception):
    """Another backup or restore holds the namespace; `holder` says which."""

    def __init__(self, namespace: str, holder: str | None) -> None:
        super().__init__(f"namespace {namespace} is busy with {holder or 'another job'}")
        self.namespace, self.holder = namespace, holder


class LockLost(BackfleetError):
    """The job no longer holds its namespace lock: it must stop before it changes anything."""


class NamespaceLock:
    """Held while one backup or restore of a namespace runs.

    The token starts with a label such as `backup 2023-02-02t17-03-15`, so a
    collision can say what is in the way.
    """

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        *,
        label: str,
        ttl: int,
        prefix: str = PREFIX,
        strict: bool = False,
    ) -> None:
        self.namespace, self.ttl, self.key, self.strict = namespace, ttl, prefix + namespace, strict
        self.token = f"{label}|{uuid.uuid4().hex}"
        self._lock: Lock = client.lock(self.key, timeout=ttl, thread_local=False)
        self._client = client
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.lost = threading.Event()
        self.lost_reason = ""

    def holder(self) -> str | None:
        """The label of whoever holds the lock now, or None."""
        value = self._client.get(self.key)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        return str(value).split("|", 1)[0] if value else None

    def acquire(self, wait: float = 0) -> None:
        """Take the lock (trying for up to `wait` s) or raise NamespaceBusy; then keep it alive."""
        deadline = time.monotonic() + wait
        while not self._lock.acquire(blocking=False, token=self.token):
            if time.monotonic() >= deadline:
                raise NamespaceBusy(self.namespace, self.holder())
            time.sleep(1)
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"lock-heartbeat-{self.namespace}", daemon=True
        )
        self._heartbeat.start()

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=10)
        try:
            self._lock.release()
        except LockError:
            log.warning("lock of namespace %s had already expired or changed hands", self.namespace)
        except RedisError as exc:  # it expires on its own after its TTL
            log.warning("could not release the lock of namespace %s: %s", self.namespace, exc)

    def confirm(self) -> None:
        """Raise LockLost unless the lock is still ours, checked in Redis now (and extended).

        Called just before a change that cannot be undone; an unreachable Redis
        cannot vouch for the lock either.
        """
        if not self.lost.is_set():
            try:
                self._lock.extend(self.ttl, replace_ttl=True)
            except LockError:
                self._retake()
            except RedisError as exc:
                self._mark_lost(f"Redis could not confirm it ({type(exc).__name__})")
        if self.lost.is_set():
            raise LockLost(f"the lock of namespace {self.namespace} was lost: {self.lost_reason}")

    def _beat(self) -> None:
        interval = max(1.0, self.ttl / 3)
        while not self._stop.wait(interval):
            try:
                self._lock.extend(self.ttl, replace_ttl=True)
            except LockError:
                self._retake()
            except RedisError as exc:  # Redis down: keep trying; the TTL covers a short outage
                log.warning("lock heartbeat of namespace %s failed: %s", self.namespace, exc)

    def _mark_lost(self, reason: str) -> None:
        log.error("the lock of namespace %s was lost: %s", self.namespace, reason)
        self.lost_reason = reason
        self.lost.set()
        self._stop.set()

    def _retake(self) -> None:
        """The key is gone (Redis lost it) or another holder has it."""
        if self.strict:
            try:
                holder = self.holder()
            except RedisError:
                holder = None
            self._mark_lost(f"taken by {holder}" if holder else "it expired or was deleted")
            return
        try:
            taken = self._client.set(self.key, self.token, nx=True, ex=self.ttl)
        except RedisError:
            return
        if taken:
            log.warning("re-took the lost lock of namespace %s", self.namespace)
            return
        self._mark_lost(f"taken by {self.holder()}")

    def __enter__(self) -> "NamespaceLock":
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

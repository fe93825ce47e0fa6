"""One streamer per `pitr` service across the fleet: a Redis lock with a token, a
heartbeat, and a standby that takes it when its holder dies.

redis-py's Lock does the compare-and-set parts (SET NX with a random token; extend and
release compare the token first). The heartbeat extends it every third of WAL_LOCK_TTL;
a key Redis lost (a restart without persistence) is taken again with SET NX, so at most
one holder wins it back. A holder that sees another's token, or that could not vouch for
its lock for a whole TTL (Redis unreachable from here: the key may have expired and been
taken), counts it lost and stops its receiver. `confirm()` is called before every upload.
"""

import logging
import os
import socket
import threading
import time
import uuid

import redis
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from workers.errors import BackfleetError

log = logging.getLogger(__name__)
PREFIX = "backfleet:lock:wal:"


class LockLost(BackfleetError):
    """Another streamer holds the service now: this one stops."""


def lock_key(namespace: str, service: str) -> str:
    return f"{PREFIX}{namespace}/{service}"


def holder_label() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"


class StreamLock:
    def __init__(self, client: redis.Redis, namespace: str, service: str, *, ttl: int) -> None:
        self.client, self.ttl = client, ttl
        self.key = lock_key(namespace, service)
        self.name = f"{namespace}/{service}"
        self.token = f"{holder_label()}|{uuid.uuid4().hex}"
        self._lock: Lock = client.lock(self.key, timeout=ttl, thread_local=False)
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._vouched = time.monotonic()  # the last time Redis said the lock was ours
        self.lost = threading.Event()
        self.unvouched = False  # Redis did not answer the last extension

    def holder(self) -> str | None:
        """Who holds it now (`host pid N`), or None."""
        value = self.client.get(self.key)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        return str(value).split("|", 1)[0] if value else None

    def try_acquire(self) -> bool:
        """Take it if free (RedisError if Redis does not answer); then keep it alive."""
        if not self._lock.acquire(blocking=False, token=self.token):
            return False
        self._stop.clear()
        self.lost.clear()
        self._vouched = time.monotonic()
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"wal-lock-{self.name}", daemon=True
        )
        self._heartbeat.start()
        return True

    def confirm(self) -> bool:
        """True if Redis says now that the lock is ours (and extends it); False if Redis
        cannot say (do nothing for now); LockLost if another holds it, or Redis stayed
        silent a whole TTL."""
        if not self.lost.is_set():
            self._extend()
        if self.lost.is_set():
            raise LockLost(f"the WAL streaming lock of {self.name} was lost")
        return time.monotonic() - self._vouched < 1.0

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=10)
            self._heartbeat = None
        if self.lost.is_set():
            return  # not ours: never delete another holder's key
        try:
            self._lock.release()
        except (LockError, RedisError) as exc:  # it expires on its own after its TTL
            log.warning("could not release the WAL lock of %s: %s", self.name, type(exc).__name__)

    def _beat(self) -> None:
        while not self._stop.wait(max(1.0, self.ttl / 3)):
            self._extend()

    def _extend(self) -> None:
        try:
            self._lock.extend(self.ttl, replace_ttl=True)
            self._vouched = time.monotonic()
            self.unvouched = False
        except LockError:
            self._retake()
        except RedisError as exc:
            if not self.unvouched:  # once per outage
                log.warning("cannot extend the WAL lock of %s: %s", self.name, type(exc).__name__)
            self.unvouched = True
        if not self.lost.is_set() and time.monotonic() - self._vouched > self.ttl:
            self._mark_lost("Redis could not vouch for it for a whole WAL_LOCK_TTL")

    def _retake(self) -> None:
        """The key is gone (Redis lost it) or another holder has it."""
        try:
            if self.client.set(self.key, self.token, nx=True, ex=self.ttl):
                log.warning("re-took the lost WAL lock of %s", self.name)
                self._vouched = time.monotonic()
                return
            holder = self.holder()
        except RedisError:
            return
        if holder is not None:
            self._mark_lost(f"taken by {holder}")

    def _mark_lost(self, reason: str) -> None:
        if not self.lost.is_set():
            log.error("the WAL streaming lock of %s was lost: %s", self.name, reason)
        self.lost.set()
        self._stop.set()

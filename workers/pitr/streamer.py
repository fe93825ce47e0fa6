"""The streamer of one `pitr` service: standby until the fleet-wide lock is its own, then
streams (stream.py) until asked to stop or the lock is lost, then standby again.

While it holds the lock, a stream that ends on its own (the server restarted, the
network dropped, the WAL it asked for was removed) is started again after a pause that
grows while it keeps failing (1 s to MAX_PAUSE), from the slot (start.py): no gap and
nothing shipped twice. A standby polls the lock every second, so it takes a dead
holder's service over within WAL_LOCK_TTL plus a second.
"""

import logging
import shutil
import threading
import time
from pathlib import Path

import redis
from redis.exceptions import RedisError

from workers.catalog.db import session_scope
from workers.catalog.wal import save_stream
from workers.errors import reason_of
from workers.fleet import Fleet
from workers.pitr.lock import LockLost, StreamLock, holder_label
from workers.pitr.server import Server, server_facts
from workers.pitr.ship import Shipper
from workers.pitr.slot import slot_name
from workers.pitr.spool import Spool
from workers.pitr.start import start_point
from workers.pitr.stream import Stream
from workers.redact import redact
from workers.services_config import ServiceSpec
from workers.transfer.crypto import Keyring
from workers.transfer.parts import TransferOptions

log = logging.getLogger(__name__)
STANDBY_POLL = 1.0  # seconds between two tries of a held lock
MAX_PAUSE = 30.0  # seconds at most between two tries of a failing stream


class ServiceStreamer:
    def __init__(
        self,
        fleet: Fleet,
        namespace: str,
        spec: ServiceSpec,
        *,
        client: redis.Redis,
        spool_root: Path,
        stop: threading.Event,
    ) -> None:
        self.fleet, self.namespace, self.spec, self.stop = fleet, namespace, spec, stop
        self.service = spec.name
        self.server = Server(spec, fleet.secrets())
        self.slot = slot_name(namespace, spec.name)
        self.lock = StreamLock(client, namespace, spec.name, ttl=fleet.settings.wal_lock_ttl)
        self.service_dir = spool_root / namespace / spec.name
        self.options = TransferOptions.from_settings(
            fleet.settings, Keyring.from_settings(fleet.settings)
        )
        self.pause = 1.0
        self.unreachable = False  # Redis did not answer the last try of the lock

    def run(self) -> None:
        """Until `stop` is set: standby, hold, stream."""
        while not self.stop.is_set():
            try:
                acquired = self.lock.try_acquire()
            except RedisError as exc:
                if not self.unreachable:  # once per outage
                    log.warning("cannot reach Redis for the WAL lock of %s: %s", self._name(), exc)
                self.unreachable, acquired = True, False
            else:
                self.unreachable = False
            if not acquired:
                self.stop.wait(STANDBY_POLL)
                continue
            log.info("took the WAL streaming of %s (%s)", self._name(), holder_label())
            try:
                self._hold()
            finally:
                self.lock.release()
                self._say_stopped()

    def _hold(self) -> None:
        removed: str | None = None
        while not self.stop.is_set() and not self.lock.lost.is_set():
            began = time.monotonic()
            try:
                removed = self._stream(removed)
            except LockLost:
                return
            except Exception as exc:
                text = redact(reason_of(exc), self.server.secrets + self.fleet.secrets())
                log.error("the WAL streaming of %s failed: %s", self._name(), text)
                self._say_error(text)
                removed = None
            if self.stop.is_set() or self.lock.lost.is_set():
                return
            if time.monotonic() - began > 60:
                self.pause = 1.0  # it had been streaming a while: not a failing loop
            self.stop.wait(self.pause)
            self.pause = min(MAX_PAUSE, self.pause * 2)

    def _stream(self, removed: str | None) -> str | None:
        """One stream; the receiver's complaint when the server had removed its WAL."""
        with self.server.connect() as conn:
            facts = server_facts(conn)
            start = start_point(
                self.fleet,
                conn,
                namespace=self.namespace,
                service=self.service,
                server=self.server,
                slot=self.slot,
                facts=facts,
                removed=removed,
            )
            shipper = Shipper(
                store=self.fleet.store,
                options=self.options,
                database_url=self.fleet.settings.database_url,
                patience=self.fleet.settings.catalog_retry_seconds,
                namespace=self.namespace,
                service=self.service,
                system_identifier=facts.system_identifier,
            )
            stream = Stream(
                self.fleet,
                namespace=self.namespace,
                service=self.service,
                server=self.server,
                conn=conn,
                facts=facts,
                slot=self.slot,
                spool=Spool(self._spool_dir(), facts.segment_size),
                shipper=shipper,
                lock=self.lock,
                stop=self.stop,
            )
            why = stream.run(start)
        return stream.removed if why == "removed" else None

    def _spool_dir(self) -> Path:
        """This process's folder; what other processes left for the service goes (their
        receivers died with them, and the slot holds whatever they had not shipped)."""
        shutil.rmtree(self.service_dir, ignore_errors=True)
        return self.service_dir / holder_label().replace(" ", "-")

    def _name(self) -> str:
        return f"{self.namespace}/{self.service}"

    def _say_error(self, text: str) -> None:
        self._save(slot=self.slot, error=text)

    def _say_stopped(self) -> None:
        if not self.lock.lost.is_set():
            self._save(slot=self.slot, holder=None)

    def _save(self, **values: object) -> None:
        try:
            with session_scope(self.fleet.settings.database_url) as session:
                save_stream(session, namespace=self.namespace, service=self.service, **values)
        except Exception as exc:
            log.warning(
                "could not record the WAL stream of %s: %s", self._name(), type(exc).__name__
            )

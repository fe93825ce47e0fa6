"""One stream of one `pitr` service, while its streamer holds the lock: pg_receivewal into
the spool, and every WAL file shipped out of it.

- A completed segment is shipped at once: uploaded, recorded, then the slot advanced past
  it, then the local file deleted (in that order: a kill at any point loses nothing).
- The growing `.partial` is shipped every WAL_SHIP_INTERVAL when it grew, never with less
  than the store holds of it already (a restarted stream re-receives its segment).
- History files (a timeline switch) are shipped as they come; a `.partial` left by a
  timeline switch is shipped one last time and deleted.
- Every WAL_SHIP_INTERVAL the streamer's word goes to the catalog (server and shipped
  positions, lag, the slot's retained bytes), and a slot found missing or lost is a gap.
- Every poll the server's flushed position is sampled (pitr/flushes.py): `caught_up_at`
  is the newest sampled moment the shipped WAL reaches (the window's `latest`).

The stream ends when asked (SIGTERM: the receiver is stopped, then what it wrote shipped),
when the lock is lost (the receiver is stopped, nothing more shipped), or when the
receiver ended on its own (the caller starts a new stream).
"""

import logging
import threading
import time
from datetime import datetime
from typing import Any

import psycopg

from workers.catalog.db import session_scope
from workers.catalog.wal import newest_wal_file, save_stream, wal_files
from workers.fleet import Fleet
from workers.pitr.flushes import FlushSamples
from workers.pitr.gaps import report_gap
from workers.pitr.lock import StreamLock
from workers.pitr.lsn import parse_lsn
from workers.pitr.receiver import Receiver
from workers.pitr.server import Server, ServerFacts
from workers.pitr.ship import Shipper, WalFile
from workers.pitr.slot import LOST, advance_slot, create_slot, drop_slot, slot_info
from workers.pitr.spool import Spool, SpoolFile, valid_end
from workers.pitr.start import StartPoint
from workers.timestamps import utcnow

log = logging.getLogger(__name__)
POLL = 0.25  # seconds between two looks at the spool (and two samples of the server's flush)

_FLUSHED = "SELECT pg_current_wal_flush_lsn()::text"
_PROGRESS = """
SELECT pg_current_wal_flush_lsn()::text,
       (SELECT min(write_lsn)::text FROM pg_stat_replication WHERE application_name = %s)
"""


class Stream:
    def __init__(
        self,
        fleet: Fleet,
        *,
        namespace: str,
        service: str,
        server: Server,
        conn: psycopg.Connection[Any],
        facts: ServerFacts,
        slot: str,
        spool: Spool,
        shipper: Shipper,
        lock: StreamLock,
        stop: threading.Event,
    ) -> None:
        self.fleet, self.namespace, self.service = fleet, namespace, service
        self.server, self.conn, self.facts, self.slot = server, conn, facts, slot
        self.spool, self.shipper, self.lock, self.stop = spool, shipper, lock, stop
        self.interval = fleet.settings.wal_ship_interval
        self.partial_end: dict[str, int] = {}  # segment stem -> the end shipped of its partial
        self.histories: set[str] = set()
        self.shipped_lsn: int | None = None
        self.shipped_at: datetime | None = None
        self.caught_up_at: datetime | None = None
        self.flushes = FlushSamples()
        self.waiting = False  # shipping waits for Redis to confirm the lock
        self.removed: str | None = None  # the receiver's complaint: the server removed its WAL
        self.receiver = Receiver(
            directory=spool.directory,
            conninfo=server.conninfo(application_name=slot),
            env=server.env(),
            clean=server.clean,
            status_interval=1,
        )

    # --- the stream's life ---
    def run(self, start: StartPoint) -> str:
        """Stream until asked to stop, the lock is lost or the receiver ends; returns why."""
        self._know_the_store(start)
        self.spool.reset()
        self.spool.seed(start.timeline, start.lsn)
        self.receiver.start()
        log.info(
            "streaming the WAL of %s/%s into %s (slot %s)",
            self.namespace,
            self.service,
            self.spool.directory,
            self.slot,
        )
        next_partial = next_word = time.monotonic()
        try:
            while True:
                if self.lock.lost.is_set():
                    return "lost"
                if self.stop.is_set():
                    self.receiver.stop()
                    self._drain()
                    return "stopped"
                if self.receiver.exited() is not None:
                    self._drain()
                    return self._receiver_ended()
                self._sample()
                self._ship_completed()
                now = time.monotonic()
                if now >= next_partial:
                    self._ship_growing()
                    next_partial = now + self.interval
                if now >= next_word:
                    self._check_slot()
                    self._say()
                    next_word = now + self.interval
                self.stop.wait(POLL)
        finally:
            self.receiver.stop()

    def _know_the_store(self, start: StartPoint) -> None:
        """The partials the store holds, so that none is shipped again with less in it."""
        self.shipped_lsn = start.shipped
        with session_scope(self.fleet.settings.database_url) as session:
            for row in wal_files(session, namespace=self.namespace, service=self.service):
                if row.partial and row.system_identifier == self.facts.system_identifier:
                    self.partial_end[row.segment] = row.end_lsn
            newest = newest_wal_file(session, namespace=self.namespace, service=self.service)
            self.shipped_at = newest.shipped_at if newest is not None else None

    def _drain(self) -> None:
        """Ship what the receiver left: the completed segments, then the growing one."""
        if self.lock.lost.is_set():
            return
        self._ship_completed()
        self._ship_growing()
        self._say()

    def _receiver_ended(self) -> str:
        complaint = self.receiver.complaint()
        if self.receiver.wal_removed():
            self.removed = complaint  # the next stream starts from a new slot, a gap recorded
            return "removed"
        log.warning("the WAL stream of %s/%s ended: %s", self.namespace, self.service, complaint)
        self._say(error=complaint)
        return "ended"

    # --- shipping ---
    def _confirmed(self) -> bool:
        """The lock is ours right now (LockLost if another has it)."""
        if self.lock.confirm():
            self.waiting = False
            return True
        if not self.waiting:  # once per outage
            log.warning("Redis cannot confirm the WAL lock of %s/%s: shipping waits", *self._id())
        self.waiting = True
        return False

    def _id(self) -> tuple[str, str]:
        return self.namespace, self.service

    def _ship_completed(self) -> None:
        for history in self.spool.histories():
            if history.name not in self.histories and self._confirmed():
                self._ship(history, history.path.read_bytes(), 0)
                self.histories.add(history.name)
        for segment in self.spool.completed():
            if not self._confirmed():
                return
            data = segment.path.read_bytes()
            if len(data) != self.facts.segment_size:
                log.warning("%s is %d bytes, not a segment: left alone", segment.path, len(data))
                continue
            end = segment.start_lsn + self.facts.segment_size
            self._ship(segment, data, end)
            advance_slot(self.conn, self.slot, end)
            segment.path.unlink()
            self.partial_end.pop(segment.stem, None)
        partials = self.spool.partials()
        for finished in partials[:-1]:  # a timeline switch left it: it grows no more
            if not self._confirmed():
                return
            shipped = self._ship_partial(finished, growing=False)
            if shipped is not None or finished.stem in self.partial_end:
                finished.path.unlink()

    def _ship_growing(self) -> None:
        partials = self.spool.partials()
        if partials and self._confirmed():
            self._ship_partial(partials[-1], growing=True)

    def _ship_partial(self, partial: SpoolFile, *, growing: bool) -> int | None:
        """Ship the partial if it holds more than the store has of it; its end, or None.
        Of the `growing` one, the receiver's own word on what it wrote counts too."""
        moment = utcnow()
        server_lsn, written = self._progress()
        try:
            data = partial.path.read_bytes()
        except FileNotFoundError:
            return None  # completed (renamed) meanwhile: shipped as such next
        if len(data) != self.facts.segment_size:
            return None  # pg_receivewal is still padding it
        if any(done.start_lsn < partial.start_lsn for done in self.spool.completed()):
            return None  # an earlier segment is not shipped yet: never a partial past it
        end = partial.start_lsn + valid_end(data)
        if growing and written is not None and written >= partial.start_lsn:
            # pg_receivewal said it had written up to there before the file was read
            end = max(end, min(written, partial.start_lsn + self.facts.segment_size))
        if end <= self.partial_end.get(partial.stem, partial.start_lsn):
            self._caught_up(server_lsn, moment)
            return None
        self._ship(partial, data, end)
        self.partial_end[partial.stem] = end
        self._caught_up(server_lsn, moment)
        return end

    def _ship(self, spooled: SpoolFile, data: bytes, end: int) -> None:
        wal = WalFile(
            stem=spooled.stem,
            data=data,
            timeline=spooled.timeline,
            start_lsn=spooled.start_lsn,
            end_lsn=end,
            partial=spooled.partial,
            history=spooled.history,
        )
        self.shipper.ship(wal)
        if not spooled.history:
            self.shipped_lsn = max(self.shipped_lsn or 0, end)
            self.shipped_at = utcnow()

    # --- what the server says ---
    def _progress(self) -> tuple[int, int | None]:
        """The server's flushed WAL end, and how far our pg_receivewal said it had written."""
        row = self.conn.execute(_PROGRESS, (self.slot,)).fetchone()
        assert row is not None
        return parse_lsn(str(row[0])), None if row[1] is None else parse_lsn(str(row[1]))

    def _sample(self) -> None:
        """The server's flushed position now (a server gone is the receiver's to report)."""
        moment = utcnow()
        try:
            row = self.conn.execute(_FLUSHED).fetchone()
        except psycopg.OperationalError:
            return
        if row is not None:
            self.flushes.add(moment, parse_lsn(str(row[0])))

    def _caught_up(self, server_lsn: int, moment: datetime) -> None:
        """`caught_up_at`: the newest sampled moment (this one included, its position read
        before the shipped data was) whose flushed position the shipped WAL reaches."""
        self.flushes.add(moment, server_lsn)
        found = self.flushes.covered_by(self.shipped_lsn)
        if found is not None and (self.caught_up_at is None or found > self.caught_up_at):
            self.caught_up_at = found

    def _check_slot(self) -> None:
        """A slot dropped or invalidated under a running stream: a gap, and a new slot."""
        info = slot_info(self.conn, self.slot)
        if info is not None and info.wal_status != LOST and info.restart_lsn is not None:
            return
        what = "was dropped" if info is None else "was invalidated by the server (lost)"
        report_gap(
            self.fleet,
            namespace=self.namespace,
            service=self.service,
            system_identifier=self.facts.system_identifier,
            start_lsn=self.shipped_lsn,
            end_lsn=self.shipped_lsn,
            reason=f"replication slot {self.slot} {what} while streaming: nothing held the "
            "WAL on the server",
        )
        if info is not None:
            drop_slot(self.conn, self.slot)
        create_slot(self.conn, self.slot)

    def _say(self, error: str | None = None) -> None:
        """The streamer's word in the catalog (best effort: streaming matters more)."""
        try:
            moment = utcnow()
            server_lsn, _ = self._progress()
            self._caught_up(server_lsn, moment)
            info = slot_info(self.conn, self.slot)
            values: dict[str, Any] = {
                "slot": self.slot,
                "holder": self.lock.token.split("|", 1)[0],
                "system_identifier": self.facts.system_identifier,
                "timeline": self.facts.timeline,
                "server_lsn": server_lsn,
                "shipped_lsn": self.shipped_lsn,
                "shipped_at": self.shipped_at,
                "caught_up_at": self.caught_up_at,
                "retained_bytes": info.retained_bytes if info else None,
                "wal_status": info.wal_status if info else None,
                "error": error,
            }
            with session_scope(self.fleet.settings.database_url) as session:
                save_stream(session, namespace=self.namespace, service=self.service, **values)
        except Exception as exc:
            log.warning(
                "could not record the WAL stream of %s/%s: %s",
                self.namespace,
                self.service,
                self.server.clean(exc),
            )

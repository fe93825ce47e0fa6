"""A background writer for the events the API middleware records.

The middleware hands each event to `EventRecorder.submit`, which only puts it
on a bounded in-memory queue: the request never waits for the catalog. One
thread per process takes events off the queue and inserts them in batches (one
transaction per batch), which is also what makes recording cheap under load.

What it costs: an event waits at most ~`LINGER` seconds in memory, so a process
killed outright loses at most that much; a clean exit drains the queue (atexit).
When the catalog is down the queue fills; past `MAX_QUEUED` events new ones are
dropped and counted, with a warning in the log, rather than slowing the API.
Events of callers without a valid key may hold at most `UNAUTHENTICATED_BUDGET`
places in the queue, so a flood of 401s cannot crowd out the real trail.
"""

import atexit
import logging
import os
import queue
import threading
import time

from workers.audit.catalog import NewEvent
from workers.audit.user_events import store_events
from workers.redact import redact

log = logging.getLogger(__name__)

MAX_QUEUED = 50_000
UNAUTHENTICATED_BUDGET = MAX_QUEUED // 10
MAX_BATCH = 1000
LINGER = 0.05  # seconds the writer waits for more events before it inserts a batch
WRITE_TRIES = 3
EXIT_DRAIN_SECONDS = 5.0


class EventRecorder:
    def __init__(
        self, *, max_queued: int = MAX_QUEUED, unauthenticated_budget: int = UNAUTHENTICATED_BUDGET
    ) -> None:
        # (catalog URL, event, whether it counts against the unauthenticated budget)
        self._queue: queue.Queue[tuple[str, NewEvent, bool]] = queue.Queue(maxsize=max_queued)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._unauthenticated_budget = unauthenticated_budget
        self._unauthenticated_queued = 0
        self.dropped = 0
        self.written = 0

    def submit(self, database_url: str, event: NewEvent, *, unauthenticated: bool = False) -> None:
        """Queue one event for the catalog; never blocks, never raises."""
        self._ensure_thread()
        with self._lock:
            if unauthenticated and self._unauthenticated_queued >= self._unauthenticated_budget:
                self._drop("unauthenticated-call budget spent")
                return
            try:
                self._queue.put_nowait((database_url, event, unauthenticated))
            except queue.Full:
                self._drop("audit queue full")
                return
            self._unauthenticated_queued += unauthenticated

    def _drop(self, why: str) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.warning("%s: %d API event(s) dropped so far", why, self.dropped)

    def drain(self, timeout: float = EXIT_DRAIN_SECONDS) -> bool:
        """Wait until every queued event is written (or given up); True if it got there."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid():  # new, or after a fork
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="backfleet-audit-writer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + LINGER
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            try:
                self._write(batch)
            finally:
                with self._lock:
                    self._unauthenticated_queued -= sum(flag for _, _, flag in batch)
                for _ in batch:
                    self._queue.task_done()

    def _write(self, batch: list[tuple[str, NewEvent, bool]]) -> None:
        by_url: dict[str, list[NewEvent]] = {}
        for url, event, _ in batch:
            by_url.setdefault(url, []).append(event)
        for url, events in by_url.items():
            for attempt in range(1, WRITE_TRIES + 1):
                try:
                    self.written += store_events(url, events)
                    break
                except Exception as exc:
                    reason = redact(f"{type(exc).__name__}: {exc}", [url])
                    if attempt == WRITE_TRIES:
                        self.dropped += len(events)
                        log.error("%d API event(s) not recorded: %s", len(events), reason)
                    else:
                        log.warning("recording API events failed, retrying: %s", reason)
                        time.sleep(0.2 * attempt)


recorder = EventRecorder()
atexit.register(recorder.drain)

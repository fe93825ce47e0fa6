"""The uploaded parts of one artifact, recorded in the catalog in batches.

A resumed upload skips the parts the catalog recorded. Recording each part in
its own transaction cost ~150 commits per GiB stored (5 MiB parts), each an fsync
of SQLite's journal or a round trip to PostgreSQL, made on the upload threads
themselves. The ledger writes what has arrived at most every `every` seconds,
in one transaction. A part uploaded but not yet recorded when the process dies
is only sent again on resume (S3 and Azure replace a part or block of the same
number), so batching trades a second of re-sent data for those commits; it
never records a part that was not uploaded.
"""

import threading
import time
from collections.abc import Callable, Sequence

from workers.catalog import queries
from workers.catalog.db import Session
from workers.catalog.models import UploadPart
from workers.stores.base import UploadedPart

Write = Callable[[Callable[[Session], None], str], None]
EVERY_SECONDS = 1.0


class PartLedger:
    """Collects an artifact's uploaded parts and writes them through `write` in batches."""

    def __init__(self, artifact_id: int, write: Write, *, every: float = EVERY_SECONDS) -> None:
        self.artifact_id, self.write, self.every = artifact_id, write, every
        self._pending: list[UploadedPart] = []
        self._last_write = time.monotonic()
        self._lock = threading.Lock()  # guards _pending and _last_write
        self._writing = threading.Lock()  # one batch at a time; other threads don't wait

    def add(self, part: UploadedPart) -> None:
        """Note an uploaded part; write the batch if it is due and no one else is writing."""
        with self._lock:
            self._pending.append(part)
            due = time.monotonic() - self._last_write >= self.every
        if due and self._writing.acquire(blocking=False):
            try:
                self.flush()
            finally:
                self._writing.release()

    def flush(self) -> None:
        """Write every part noted so far (e.g. before the upload pauses or gives up)."""
        with self._lock:
            batch, self._pending = self._pending, []
            self._last_write = time.monotonic()
        if batch:
            self.write(
                lambda session: record_parts(session, self.artifact_id, batch),
                "recording uploaded parts",
            )


def record_parts(session: Session, artifact_id: int, parts: Sequence[UploadedPart]) -> None:
    """Add the parts; a batch retried after a lost commit reply replaces, never doubles, a part."""
    for part in parts:
        queries.forget_parts(session, artifact_id=artifact_id, number=part.number)
        session.add(
            UploadPart(
                artifact_id=artifact_id,
                number=part.number,
                size=part.size,
                etag=part.etag,
                sha256=part.sha256,
            )
        )

"""Recording progress in the catalog while work runs: at most once a second, never failing it."""

import logging
import threading
import time

from workers.catalog.db import session_scope
from workers.catalog.models import Artifact, Restore

log = logging.getLogger(__name__)
EVERY_SECONDS = 1.0


class CatalogProgress:
    """Writes `bytes_done` of one Artifact or Restore row, throttled; safe from any thread."""

    def __init__(self, url: str, model: type[Artifact] | type[Restore], row_id: int) -> None:
        self.url, self.model, self.row_id = url, model, row_id
        self.last_write = 0.0
        self.lock = threading.Lock()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last_write < EVERY_SECONDS or not self.lock.acquire(blocking=False):
            return
        try:
            self.last_write = now
            with session_scope(self.url) as session:
                row = session.get(self.model, self.row_id)
                if isinstance(row, Artifact | Restore):
                    row.bytes_done = done
        except Exception:  # progress is a courtesy: never fail the work over it
            log.debug("could not record progress", exc_info=True)
        finally:
            self.lock.release()

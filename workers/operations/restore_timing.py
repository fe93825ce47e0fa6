"""A user restore's recovery-time evidence: how long each of its services took.

Each service restored (workers/operations/restore.py) becomes a `recovery_runs` row
with trigger `restore`, judged by the service's RTO like a drill: `backfleet report`,
`GET /athena/api/v1/report/recovery` and /metrics show the last one per service.
Recording is best effort: a catalog hiccup never changes a restore's outcome.
"""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.models import FAILED, SUCCESS, USER_RESTORE, RecoveryRun
from workers.errors import reason_of
from workers.fleet import Fleet
from workers.redact import redact
from workers.timestamps import utcnow

log = logging.getLogger(__name__)


@dataclass
class _Timing:
    service: str
    kind: str
    row: RecoveryRun


class RestoreTimer:
    """Times each service of one restore attempt; `record` writes them once it is settled."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        restore_id: int,
        namespace: str,
        source_namespace: str,
        timestamp: str,
    ) -> None:
        self.fleet, self.restore_id = fleet, restore_id
        self.namespace, self.source_namespace, self.timestamp = (
            namespace,
            source_namespace,
            timestamp,
        )
        self.rows: list[RecoveryRun] = []

    @contextmanager
    def service(
        self,
        service: str,
        kind: str,
        on_read: Callable[[int], None],
        target_time: datetime | None = None,
    ) -> Iterator[Callable[[int], None]]:
        """Time the block restoring `service` (a base backup: to `target_time`, if given); it
        reads through the callback this yields."""
        started, began, read = utcnow(), time.monotonic(), 0

        def counted(size: int) -> None:
            nonlocal read
            read += size
            on_read(size)

        error: str | None = None
        try:
            yield counted
        except BaseException as exc:
            error = redact(reason_of(exc), self.fleet.secrets())
            raise
        finally:
            seconds = time.monotonic() - began
            rto = self.fleet.config.policy_of(self.namespace, service, self.fleet.settings).rto
            self.rows.append(
                RecoveryRun(
                    namespace=self.namespace,
                    service=service,
                    trigger=USER_RESTORE,
                    kind=kind,
                    source_namespace=self.source_namespace,
                    timestamp=self.timestamp,
                    restore_id=self.restore_id,
                    status=FAILED if error else SUCCESS,
                    started_at=started,
                    finished_at=utcnow(),
                    seconds=seconds,
                    rto_seconds=rto,
                    bytes_read=read,
                    error=error,
                    target_time=target_time,
                )
            )

    def record(self) -> None:
        """Write the rows (never raises)."""
        if not self.rows:
            return
        try:
            with session_scope(self.fleet.settings.database_url) as session:
                backup = queries.get_backup(
                    session, namespace=self.source_namespace, timestamp=self.timestamp
                )
                for row in self.rows:
                    row.backup_id = backup.id if backup else None
                    session.add(row)
        except Exception:
            log.exception("restore %s: could not record its services' durations", self.restore_id)

"""Deleting the WAL retention planned (wal_plan.py), after the backups, under the pass's
retention lock: oldest first, in batches, each batch's objects then its rows, then one
`WalDeleted` audit event per batch (how many files, the first and last, the LSN range,
why).

Oldest first, and a service's deletion stops at its first failure: what is left is
always the newest part of its WAL, with no hole in it (a hole would look like a gap to
the streamer). An object under an S3 Object Lock retention stops it too, without failing
(the next passes go on once the lock has passed). A pass that dies between a batch's
objects and its rows leaves rows whose objects are gone: the next pass plans them again
(deleting a missing object succeeds).
"""

import logging
from collections.abc import Sequence
from datetime import datetime

from workers.audit.user_events import record_system_event
from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.errors import reason_of
from workers.fleet import Fleet
from workers.operations.locks import NamespaceLock
from workers.operations.retention.wal_plan import WalFile, WalPrune
from workers.pitr.lsn import format_lsn
from workers.redact import redact
from workers.timestamps import utcnow

log = logging.getLogger(__name__)

WAL_DELETE_BATCH = 500  # WAL files whose rows go in one transaction (and one audit event)


def delete_wal(
    fleet: Fleet,
    *,
    namespace: str,
    work: Sequence[tuple[WalPrune, list[WalFile]]],
    lock: NamespaceLock,
    now: datetime | None = None,
) -> None:
    """Delete the planned WAL files; each prune says how many went, and why it stopped."""
    now = now or utcnow()
    for prune, files in work:
        for start in range(0, len(files), WAL_DELETE_BATCH):
            if lock.lost.is_set():
                prune.error = "the retention lock was lost"
                break
            batch = files[start : start + WAL_DELETE_BATCH]
            done = _delete_objects(fleet, prune, batch, now)
            with session_scope(fleet.settings.database_url) as session:
                queries.delete_wal_rows(session, ids=[item.id for item in done])
            prune.deleted += len(done)
            if done:
                _record(namespace, prune, done)
            if len(done) < len(batch):
                break
        if prune.error:
            log.error(
                "retention of %s: WAL of %s: %d of %d files deleted: %s",
                namespace,
                prune.service,
                prune.deleted,
                prune.files,
                prune.error,
            )
        else:
            log.info(
                "retention of %s: deleted %d WAL files of %s (%s to %s)%s",
                namespace,
                prune.deleted,
                prune.service,
                prune.start_lsn,
                prune.end_lsn,
                f"; the rest is held: {prune.held}" if prune.held else "",
            )


def _delete_objects(
    fleet: Fleet, prune: WalPrune, batch: list[WalFile], now: datetime
) -> list[WalFile]:
    """Delete the batch's objects in order up to the first that fails or is locked."""
    store = fleet.store
    done = []
    for item in batch:
        try:
            if store.object_lock:
                until = store.locked_until(item.key)
                if until is not None and until > now:
                    prune.held = f"{item.segment} is under Object Lock until {until.isoformat()}"
                    break
            store.delete(item.key)
        except Exception as exc:
            prune.error = f"{item.segment}: {redact(reason_of(exc), fleet.secrets())}"
            break
        done.append(item)
    return done


def _record(namespace: str, prune: WalPrune, done: list[WalFile]) -> None:
    """The WalDeleted audit event of one batch."""
    record_system_event(
        namespace=namespace,
        name="WalDeleted",
        params={
            "namespace": namespace,
            "service": prune.service,
            "systemIdentifier": prune.system_identifier,
            "files": str(len(done)),
            "first": done[0].segment,
            "last": done[-1].segment,
            "startLsn": format_lsn(min(item.start_lsn for item in done)),
            "endLsn": format_lsn(max(item.end_lsn for item in done)),
            "reason": prune.reason,
        },
    )

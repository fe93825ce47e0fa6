"""The secondary store: a second copy of every successful backup, in another region or cloud.

Configured like the primary with every variable prefixed by `SECONDARY_`
(`SECONDARY_OBJECT_STORE_LOCATION_TYPE=s3`, `SECONDARY_AWS_S3_BUCKET_NAME`,
`SECONDARY_AWS_ACCESS_KEY`…, `SECONDARY_RETENTION_KEEP_MONTHLY`…). The copy
sweep (`tasks.replicate.copy_to_secondary`, queue `maintenance`) streams each
artifact of each successful, not yet copied backup from the primary, checks
its SHA-256 on the way (a corrupt primary is never copied), reads the copy
back and checks it again, and writes the manifest last, exactly as a backup
does. Verification covers both copies, and restores fall back to it.

An artifact of the primary in an archive class (retention moved an old backup there
before a secondary was configured) is asked back from its archive, and the backup is
copied by a later sweep, once it reads: the sweep never waits.
"""

import logging
from dataclasses import dataclass, field

from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.tiers import record_storage_classes
from workers.errors import BackfleetError, TransientError
from workers.fleet import Fleet
from workers.operations.locks import NamespaceBusy, being_read
from workers.redact import redact
from workers.repository.authenticity import load_manifest
from workers.repository.manifest import ArtifactEntry, manifest_key
from workers.repository.stored import check_stored
from workers.retry import RetryPolicy, call_with_retries
from workers.stores import ObjectStore
from workers.timestamps import utcnow
from workers.transfer.copy import copy_artifact
from workers.transfer.rehydration import NO_WAIT, RehydrationTimeout, wait_until_readable

log = logging.getLogger(__name__)
RETENTION_WAIT = 60  # seconds a copy waits for a retention pass of its namespace


@dataclass
class CopyReport:
    copied: list[str] = field(default_factory=list)  # namespace/timestamp
    failed: dict[str, str] = field(default_factory=dict)


def copy_pending(fleet: Fleet, *, limit: int = 100) -> CopyReport:
    """Copy every successful backup the secondary does not have yet, oldest first."""
    report = CopyReport()
    if fleet.secondary is None:
        return report
    with session_scope(fleet.settings.database_url) as session:
        pending = queries.uncopied_backups(session, limit=limit)
    for namespace, timestamp in pending:
        name = f"{namespace}/{timestamp}"
        try:
            copy_backup(fleet, namespace=namespace, timestamp=timestamp)
            report.copied.append(name)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, BackfleetError) else type(exc).__name__
            report.failed[name] = redact(f"{reason}", fleet.secrets())
            log.error("copy of %s to the secondary store failed: %s", name, report.failed[name])
    return report


def copy_backup(fleet: Fleet, *, namespace: str, timestamp: str) -> None:
    """Every artifact, checked on the way and read back, then the manifest; then the catalog.
    Marked as being read (retention neither deletes nor moves it meanwhile); a retention
    pass that goes on puts the copy off to the next sweep (TransientError)."""
    try:
        with being_read(fleet.settings, namespace, timestamp, wait=RETENTION_WAIT):
            _copy_backup(fleet, namespace=namespace, timestamp=timestamp)
    except NamespaceBusy as busy:
        raise TransientError(f"copy of {namespace}/{timestamp} put off: {busy}") from None


def _copy_backup(fleet: Fleet, *, namespace: str, timestamp: str) -> None:
    target = fleet.secondary
    assert target is not None
    policy = RetryPolicy.from_settings(fleet.settings)
    # Only an authentic manifest is copied, byte for byte: its digest stays the catalog's.
    trusted = load_manifest(fleet, namespace=namespace, timestamp=timestamp, store=fleet.store)
    manifest = trusted.manifest
    # Those an earlier attempt copied, and that read back right, are done.
    todo = [entry for entry in manifest.artifacts if not _holds(target, entry)]
    try:  # every archived one asked back at once; the sweep does not wait for them
        moved = wait_until_readable(fleet.store, [entry.key for entry in todo], NO_WAIT)
    except RehydrationTimeout as exc:
        raise TransientError(str(exc)) from None
    if moved:  # an Azure blob leaves Archive for Hot: retention moves it back
        with session_scope(fleet.settings.database_url) as session:
            record_storage_classes(
                session, namespace=namespace, timestamp=timestamp, classes=moved, since=utcnow()
            )
    for entry in todo:
        copy_artifact(
            fleet.store,
            target,
            entry,
            part_size=fleet.settings.backup_part_size,
            policy=policy,
        )
        check_stored(target, entry)
    call_with_retries(
        lambda: target.put_object(manifest_key(namespace, timestamp), trusted.data),
        policy=policy,
        what="manifest copy",
    )
    with session_scope(fleet.settings.database_url) as session:
        row = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
        if row is not None:
            row.copied_at = utcnow()
    log.info("copied %s/%s to the secondary store", namespace, timestamp)


def _holds(store: ObjectStore, entry: ArtifactEntry) -> bool:
    try:
        check_stored(store, entry)
    except BackfleetError:
        return False
    return True

"""Verifying the WAL of `pitr` services like artifacts: each pass (`backfleet verify`,
tasks.verify.verify_backups) reads back a sample of each service's WAL files.

The sample (WAL_VERIFY_SAMPLE per service, 0: none): every file whose last check failed
(so its alert says how things are now), then up to half the sample the newest files not
checked since they were shipped, newest first, then random others. The growing
`.partial` is left out: it is rewritten every few seconds.

Each file is checked as an artifact is (workers/operations/verify.py): the SHA-256 its
object's metadata records, then every stored byte read, their size and SHA-256 compared
with its catalog row; decrypted (when its key is at hand) and decompressed to its end,
which must be the file's own size (a segment's 16 MiB). An encrypted file whose key is not
configured is checked by size and SHA-256 only.

The verdict goes on the file's row (`verified`, `verified_at`, `verify_error`), and the
service's `wal.verify_failed` alert opens while any of its files' last check failed
(resolved by the pass that finds none). A file that changed during its check (shipped
again: a restarted stream re-sends its newest segment) or went (retention) is not judged.
The primary store only: WAL is not copied to the secondary (docs/concepts/pitr.md).
"""

import logging
import time
from dataclasses import dataclass, field

from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.models import FAILED, SUCCESS, WalSegment
from workers.catalog.wal import newest_wal_file
from workers.errors import IntegrityError, reason_of
from workers.fleet import Fleet
from workers.monitoring.alerts import AlertEvent, alerter_for, safely
from workers.redact import redact
from workers.repository.manifest import ArtifactEntry
from workers.repository.namespaces import namespaces_of
from workers.repository.stored import check_recorded_sha256, check_stored
from workers.sources.base import CHUNK_SIZE
from workers.stores.base import ObjectStore
from workers.timestamps import utcnow
from workers.transfer import crypto
from workers.transfer.download import open_restore_stream

log = logging.getLogger(__name__)
EVENT = "wal.verify_failed"
RECHECK_AFTER = 1.0  # seconds before a failed file is checked once more


@dataclass
class WalVerifyResult:
    """One service's WAL checked in one pass."""

    namespace: str
    service: str
    status: str  # Success or Failed (any of its files' last check failed)
    files: int = 0  # checked this pass
    bytes_read: int = 0
    failed: list[str] = field(default_factory=list)  # `<file>: why`, this pass's and older
    error: str | None = None


def verify_wal(fleet: Fleet, *, namespace: str | None = None) -> list[WalVerifyResult]:
    """Check a sample of each service's WAL files (every namespace's, or one's)."""
    sample = fleet.settings.wal_verify_sample
    if sample <= 0:
        return []
    keyring = crypto.Keyring.from_settings(fleet.settings)
    results = []
    for ns in [namespace] if namespace else namespaces_of(fleet):
        with session_scope(fleet.settings.database_url) as session:
            services = queries.wal_services(session, namespace=ns)
        for service in services:
            result = verify_service_wal(fleet, namespace=ns, service=service, keyring=keyring)
            results.append(result)
            _alert(fleet, result)
    return results


def verify_service_wal(
    fleet: Fleet, *, namespace: str, service: str, keyring: crypto.Keyring | None
) -> WalVerifyResult:
    """Check the service's sample and record each verdict; never raises."""
    result = WalVerifyResult(namespace, service, SUCCESS)
    try:
        with session_scope(fleet.settings.database_url) as session:
            newest = newest_wal_file(session, namespace=namespace, service=service)
            growing = [newest.id] if newest is not None and newest.partial else []
            rows = queries.wal_to_check(
                session,
                namespace=namespace,
                service=service,
                sample=fleet.settings.wal_verify_sample,
                skip_ids=growing,
            )
            session.expunge_all()
        for row in rows:
            _check_one(fleet, row, keyring, result)
        with session_scope(fleet.settings.database_url) as session:
            failed = queries.failed_wal(session, namespace=namespace, service=service)
            result.failed = [f"{_name(row)}: {row.verify_error}" for row in failed]
    except Exception as exc:  # the catalog: the next pass tries again
        result.error = redact(reason_of(exc), fleet.secrets())
    result.status = FAILED if result.failed or result.error else SUCCESS
    log.info(
        "verify WAL of %s/%s: %s (%d files, %d B)%s",
        namespace,
        service,
        result.status,
        result.files,
        result.bytes_read,
        f": {'; '.join(result.failed) or result.error}" if result.status == FAILED else "",
    )
    return result


def _check_one(
    fleet: Fleet, row: WalSegment, keyring: crypto.Keyring | None, result: WalVerifyResult
) -> None:
    """Check the row's object and record the verdict. A failure is checked once more
    after RECHECK_AFTER, against the row as it is then: a file shipped again (its object
    rewritten a moment before its row) or deleted meanwhile is not judged on the race."""
    error = _error_of(fleet, row, keyring, result)
    if error is not None:
        time.sleep(RECHECK_AFTER)
        with session_scope(fleet.settings.database_url) as session:
            now = session.get(WalSegment, row.id)
            if now is not None:
                session.expunge(now)
        if now is None or now.sha256 != row.sha256:
            log.info("verify WAL: %s changed during its check: not judged", row.key)
            return
        error = _error_of(fleet, row, keyring, result)
    with session_scope(fleet.settings.database_url) as session:
        judged = queries.record_wal_check(
            session, id=row.id, sha256=row.sha256, ok=error is None, error=error, at=utcnow()
        )
    if judged:
        result.files += 1
    else:
        log.info("verify WAL: %s changed during its check: not judged", row.key)


def _error_of(
    fleet: Fleet, row: WalSegment, keyring: crypto.Keyring | None, result: WalVerifyResult
) -> str | None:
    try:
        result.bytes_read += check_wal_file(fleet.store, entry_of(row), keyring)
    except Exception as exc:
        return redact(reason_of(exc), fleet.secrets())
    return None


def entry_of(row: WalSegment) -> ArtifactEntry:
    """The WAL file as an artifact's manifest entry would describe it."""
    return ArtifactEntry(
        service=row.service,
        key=row.key,
        format="wal",
        compression="zstd",
        encryption=row.encryption,
        size=row.size,
        sha256=row.sha256,
        source_size=row.source_size,
    )


def check_wal_file(store: ObjectStore, entry: ArtifactEntry, keyring: crypto.Keyring | None) -> int:
    """Read one WAL object to its end (verify.check_artifact's checks, and the decoded size
    must be the file's); IntegrityError/NotFoundError on any difference. Returns the
    stored bytes read."""
    if entry.encryption is not None and (
        keyring is None or str(entry.encryption.get("key_id")) not in keyring.all_keys
    ):
        return check_stored(store, entry)
    check_recorded_sha256(store, entry)
    read = decoded = 0

    def count(size: int) -> None:
        nonlocal read
        read += size

    with open_restore_stream(store, entry, keyring, count) as stream:
        while chunk := stream.read(CHUNK_SIZE):
            decoded += len(chunk)
    if decoded != entry.source_size:
        raise IntegrityError(
            f"{entry.key} decodes to {decoded} bytes, the catalog says {entry.source_size}"
        )
    return read


def _name(row: WalSegment) -> str:
    return row.segment + (".partial" if row.partial else "")


def _alert(fleet: Fleet, result: WalVerifyResult) -> None:
    """wal.verify_failed per service: open while any file's last check failed."""
    condition = f"{EVENT}:{result.namespace}:{result.service}"
    alerter = alerter_for(fleet)
    if result.error is not None and not result.failed:
        return  # nothing was judged: the alert stays as it was
    if not result.failed:
        safely(lambda: alerter.resolve(condition), condition)
        return
    shown = "; ".join(result.failed[:3])
    more = f" (and {len(result.failed) - 3} more)" if len(result.failed) > 3 else ""
    alert = AlertEvent(
        event=EVENT,
        text=(
            f"Backfleet: WAL of service {result.service} of namespace {result.namespace} "
            f"FAILED verification: {shown}{more}. A restore to a moment cannot replay past "
            "a damaged WAL file"
        ),
        namespace=result.namespace,
        service=result.service,
    )
    safely(lambda: alerter.open(condition, alert), condition)

"""Verification: read every artifact back from the store and prove it matches its manifest.

For each namespace, each service whose newest backup's last passing check started
longer ago than its `verify` cadence (VERIFY_EVERY by default) before this pass
started, or whose latest check failed, is due: the newest successful backup
holding its artifact (a full, onlyConfig or per-schedule backup alike) is
verified; services verified within their cadence are skipped (VERIFY_SCHEDULE
decides when the pass runs, the cadence which services it takes). A rotating
sample of older backups is added (those verified least recently first,
VERIFY_SAMPLE_SIZE of them).
Only an authentic manifest is used (workers/repository/authenticity.py: the catalog's
digest, its artifact rows, or a valid MAC). The SHA-256 each object's store
metadata records (where it carries one) must be the manifest's; then each artifact is
read in full, its SHA-256 and size compared with the manifest, and it is decrypted (when a key
is at hand) and decompressed to its end. A missing object, one changed byte,
or a truncated stream fails the backup's verification, which is recorded in
the catalog, reported as an audit event and alerted (`verify.failed`).

An artifact in an archive class (S3 GLACIER/DEEP_ARCHIVE, Azure Archive: retention moved
it there, operations/tiers.py) is not read, which would mean a rehydration of hours and
its retrieval fees: it is judged by what the store says of it
(repository.stored.check_by_metadata: its size, its recorded SHA-256 and the store's own
SHA-256 where it keeps one), and the verification is recorded as `kind = "metadata"`,
not "read": a weaker proof (the README says what it shows and what it does not).
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from workers.catalog import queries
from workers.catalog.db import Session, session_scope
from workers.catalog.models import FAILED, SUCCESS, Backup, Verification
from workers.errors import reason_of
from workers.fleet import Fleet
from workers.operations.locks import NamespaceBusy, being_read
from workers.operations.verdicts import report_verdict
from workers.redact import redact
from workers.repository.authenticity import load_manifest
from workers.repository.manifest import ArtifactEntry, Manifest
from workers.repository.namespaces import namespaces_of
from workers.repository.stored import check_by_metadata, check_recorded_sha256, check_stored
from workers.settings import parse_duration
from workers.stores.base import ObjectStore
from workers.timestamps import utcnow
from workers.transfer import crypto
from workers.transfer.download import open_restore_stream

log = logging.getLogger(__name__)
# Seconds a verification waits for a retention pass of its namespace (then puts it off).
RETENTION_WAIT = 60


@dataclass(frozen=True)
class VerifyResult:
    namespace: str
    timestamp: str
    store: str  # primary or secondary
    status: str  # Success or Failed
    artifacts: int
    bytes_read: int
    error: str | None = None
    by_metadata: int = 0  # artifacts judged by the store's metadata, unread (archived)

    @property
    def kind(self) -> str:
        """The catalog's verification kind: "metadata" if any artifact went unread."""
        return "metadata" if self.by_metadata else "read"


def stores_of(fleet: Fleet) -> list[tuple[str, ObjectStore]]:
    """Every copy to verify: the primary store, and the secondary when there is one."""
    stores: list[tuple[str, ObjectStore]] = [("primary", fleet.store)]
    if fleet.secondary is not None:
        stores.append(("secondary", fleet.secondary))
    return stores


def backups_to_verify(
    fleet: Fleet, *, namespace: str, sample: int, now: datetime | None = None
) -> list[str]:
    """The newest backup holding each due service's artifact, newest first, then the
    `sample` least recently verified other successful backups. `now`: when the pass
    started (the same moment for every namespace of a pass)."""
    now = now or utcnow()
    chosen: list[Backup] = []
    with session_scope(fleet.settings.database_url) as session:
        for service, cadence in _cadences(fleet, session, namespace).items():
            newest = queries.newest_success_holding(session, namespace=namespace, service=service)
            if newest is None or newest in chosen:
                continue
            if _is_due(session, namespace, service, newest, cadence, now):
                chosen.append(newest)
        chosen.sort(key=lambda backup: backup.timestamp, reverse=True)
        older = queries.least_recently_verified(
            session, namespace=namespace, excluding_ids=[b.id for b in chosen], limit=sample
        )
        return [backup.timestamp for backup in (*chosen, *older)]


def _is_due(
    session: Session, namespace: str, service: str, newest: Backup, cadence: int, now: datetime
) -> bool:
    """Whether the service's newest backup must be read back in the pass started at `now`:
    the last passing check of it started a cadence ago (less the slack), or never, or
    its latest check failed (a store error is retried next pass, not a cadence later)."""
    since = now - _due_after(cadence)
    last = queries.last_verified_newest(session, namespace=namespace, service=service, since=since)
    if last is None:  # no passing check of it started since then
        return True
    return queries.last_read_failed(session, backup_id=newest.id)


def _cadences(fleet: Fleet, session: Session, namespace: str) -> dict[str, int]:
    """Each service's `verify` cadence in seconds; a namespace no longer configured keeps
    its backups' services at VERIFY_EVERY."""
    if namespace in fleet.config.namespaces:
        return {
            service: fleet.config.policy_of(namespace, service, fleet.settings).verify
            for service in sorted(fleet.config.services_of(namespace))
        }
    every = parse_duration(fleet.settings.verify_every)
    return {s: every for s in queries.services_in_backups(session, namespace=namespace)}


def _due_after(cadence: int) -> timedelta:
    """How long before a pass the last one that checked a service must have started for it
    to be due again: its cadence, less a tenth of it (at most an hour), so a daily check on
    a daily schedule whose pass began a little later yesterday is not put off by a day.
    Starts are compared with starts: how long the reads took does not matter."""
    return timedelta(seconds=cadence - min(cadence / 10, 3600))


def verify_backups(
    fleet: Fleet,
    *,
    namespace: str | None = None,
    timestamp: str | None = None,
    now: datetime | None = None,
) -> list[VerifyResult]:
    """Verify the chosen backups (default: every namespace's selection) in every store.

    `now` (default: when the pass starts) is the pass's one moment: it decides which
    services are due in every namespace, and is recorded as each check's start, so
    tomorrow's pass compares its start with today's whatever the reads take (a
    namespace's turn coming late after another's long reads changes nothing).
    """
    pass_started = now or utcnow()
    namespaces = [namespace] if namespace else namespaces_of(fleet)
    results: list[VerifyResult] = []
    for ns in namespaces:
        stamps = (
            [timestamp]
            if timestamp
            else backups_to_verify(
                fleet, namespace=ns, sample=fleet.settings.verify_sample_size, now=pass_started
            )
        )
        for stamp in stamps:
            results.extend(
                verify_backup(fleet, namespace=ns, timestamp=stamp, started=pass_started)
            )
    return results


def verify_backup(
    fleet: Fleet, *, namespace: str, timestamp: str, started: datetime | None = None
) -> list[VerifyResult]:
    """Verify one backup in every store; record, audit and alert the verdict. `started`:
    when the pass that took it started (default: now)."""
    started = started or utcnow()
    try:
        with being_read(fleet.settings, namespace, timestamp, wait=RETENTION_WAIT):
            return _verify_backup(fleet, namespace=namespace, timestamp=timestamp, started=started)
    except NamespaceBusy as busy:  # a retention pass that goes on: the next pass verifies it
        log.warning("verification of %s/%s put off: %s", namespace, timestamp, busy)
        return []


def _verify_backup(
    fleet: Fleet, *, namespace: str, timestamp: str, started: datetime
) -> list[VerifyResult]:
    keyring = crypto.Keyring.from_settings(fleet.settings)
    copied = _copied(fleet, namespace, timestamp)
    results = []
    for name, store in stores_of(fleet):
        if name == "secondary" and not copied:
            continue  # the copy sweep has not reached it yet: nothing to check there

        # Only an authentic manifest is checked: a forged one fails the verification.
        def load(store: ObjectStore = store) -> Manifest:
            return load_manifest(
                fleet, namespace=namespace, timestamp=timestamp, store=store
            ).manifest

        result = check_backup(
            store,
            namespace=namespace,
            timestamp=timestamp,
            load=load,
            keyring=keyring,
            store_name=name,
        )
        if result.error:
            result = _redacted(result, fleet.secrets())
        results.append(result)
        log.info(
            "verify %s/%s (%s): %s%s",
            namespace,
            timestamp,
            name,
            result.status,
            f": {result.error}" if result.error else "",
        )
    _record(fleet, results, started)
    return results


def check_backup(
    store: ObjectStore,
    *,
    namespace: str,
    timestamp: str,
    load: Callable[[], Manifest],
    keyring: crypto.Keyring | None = None,
    store_name: str = "primary",
) -> VerifyResult:
    """Load the backup's manifest with `load`, read every artifact from `store`; never raises."""
    errors: list[str] = []
    count = read = by_metadata = 0
    try:
        manifest = load()
    except Exception as exc:
        return VerifyResult(namespace, timestamp, store_name, FAILED, 0, 0, reason_of(exc))
    for entry in manifest.artifacts:
        try:
            if _archived(store, entry):
                log.info("verify: %s", check_by_metadata(store, entry))
                by_metadata += 1
            else:
                read += check_artifact(store, entry, keyring)
            count += 1
        except Exception as exc:
            errors.append(f"{entry.key}: {reason_of(exc)}")
    status = FAILED if errors else SUCCESS
    error = "; ".join(errors) or None
    return VerifyResult(namespace, timestamp, store_name, status, count, read, error, by_metadata)


def _archived(store: ObjectStore, entry: ArtifactEntry) -> bool:
    """Is the object in a class that cannot be read without a rehydration? (One HEAD, only
    on a store that has such classes.)"""
    return bool(store.archive_classes) and (
        store.storage_class_of(entry.key) in store.archive_classes
    )


def check_artifact(store: ObjectStore, entry: ArtifactEntry, keyring: crypto.Keyring | None) -> int:
    """Read one artifact to its end; IntegrityError/NotFoundError on any difference.

    With its key at hand it is decrypted and decompressed in full; an encrypted
    artifact whose key is not configured is checked by size and SHA-256 only.
    Returns the number of stored bytes read. The SHA-256 the object's metadata
    records (where it carries one) is checked first, with one HEAD.
    """
    if entry.encryption is not None and (
        keyring is None or str(entry.encryption.get("key_id")) not in keyring.all_keys
    ):
        return check_stored(store, entry)
    check_recorded_sha256(store, entry)
    read = 0

    def count(size: int) -> None:
        nonlocal read
        read += size

    with open_restore_stream(store, entry, keyring, count) as stream:
        stream.verify()
    return read


def _copied(fleet: Fleet, namespace: str, timestamp: str) -> bool:
    """Whether the secondary store should hold the backup (copied, or unknown to the catalog)."""
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
        return backup is None or backup.copied_at is not None


def _record(fleet: Fleet, results: Sequence[VerifyResult], started: datetime) -> None:
    """One catalog row per store; the backup's verdict is Failed if any copy failed."""
    if not results:
        return
    namespace, timestamp = results[0].namespace, results[0].timestamp
    failed = [result for result in results if result.status == FAILED]
    now = utcnow()
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
        for result in results:
            session.add(
                Verification(
                    backup_id=backup.id if backup else None,
                    namespace=namespace,
                    timestamp=timestamp,
                    kind=result.kind,
                    store=result.store,
                    status=result.status,
                    artifacts=result.artifacts,
                    bytes_read=result.bytes_read,
                    error=result.error,
                    started_at=started,
                    checked_at=now,
                )
            )
        if backup is not None:
            backup.verified, backup.verified_at = (FAILED if failed else SUCCESS), now
    report_verdict(fleet, namespace=namespace, timestamp=timestamp, failed=failed)


def _redacted(result: VerifyResult, secrets: list[str]) -> VerifyResult:
    return replace(result, error=redact(result.error or "", secrets))

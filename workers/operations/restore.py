"""One restore: each chosen service streamed back from the store, verified, then swapped in.

Services are restored one after another; the first failure stops the restore
(the services not yet reached are untouched, and a failed service keeps its
previous data, since every source commits only after verification).

Archived artifacts (S3 GLACIER/DEEP_ARCHIVE, Azure Archive: retention moves old backups
there, operations/tiers.py) are first asked back from the store, all at once, and the
restore waits for them, its progress on its catalog row (transfer/rehydration.py).

Each attempt first puts right what a killed attempt left (operations/recovery.py),
checks its namespace lock right before each source commits (`check_lock`
raises LockLost: the target stays as it was), and records its result as a
compare-and-set from Running, for this attempt only: a redelivery, a newer
attempt or the reconciler that recorded first wins, and only the winner sends
the alert and the audit event.
"""

import logging
from collections.abc import Callable
from typing import Any

from workers.audit.operations import restore_ended
from workers.catalog import queries
from workers.catalog.attempts import start_attempt
from workers.catalog.db import Session, session_scope, write_catalog
from workers.catalog.models import FAILED, PENDING, SUCCESS, Restore
from workers.catalog.progress import CatalogProgress
from workers.catalog.tiers import record_storage_classes
from workers.errors import BackfleetError, NotFoundError, SourceError, reason_of
from workers.fleet import Fleet
from workers.monitoring.notify import report_restore_outcome
from workers.operations.locks import LockLost
from workers.operations.overrides import override_of
from workers.operations.recovery import recover_targets
from workers.operations.restore_timing import RestoreTimer
from workers.pitr.restore_source import restore_source
from workers.pitr.to_time import replay_to
from workers.redact import redact
from workers.repository.authenticity import load_manifest
from workers.repository.manifest import ArtifactEntry, Manifest
from workers.repository.stored import check_stored
from workers.sources import PGBASE, Source
from workers.stores.base import ObjectStore
from workers.timestamps import utcnow
from workers.transfer import crypto
from workers.transfer.download import restore_artifacts
from workers.transfer.rehydration import RehydrationWait, wait_until_readable

log = logging.getLogger(__name__)


def run_restore(
    fleet: Fleet, *, restore_id: int, check_lock: Callable[[], None] = lambda: None
) -> str:
    """Run (or resume) the restore; `check_lock` raises LockLost once the namespace is not ours."""
    url = fleet.settings.database_url
    with session_scope(url) as session:
        restore = queries.get_restore(session, restore_id=restore_id)
        if restore is None:
            raise NotFoundError(f"restore {restore_id} is not in the catalog")
        if restore.status in (SUCCESS, FAILED):  # a redelivery of finished work: reported once
            return restore.status
        # The override the caller asked for is on the row (operations/overrides.py), kept to
        # the end; it is a note, not this attempt's error.
        note = override_of(restore.error)
        started = start_attempt(restore, max_redeliveries=fleet.settings.task_max_redeliveries)
        attempt, status = restore.attempts, restore.status
        if not started and note:  # the cap's reason replaced it: the override stays on record
            restore.error = f"{note}; {restore.error}"
        error = None if started else restore.error
        namespace, source_namespace = restore.namespace, restore.source_namespace
        timestamp, services = restore.timestamp, list(restore.services)
        target_time = restore.target_time  # a restore to a moment (pitr/to_time.py)

    # A killed attempt may have left a staging copy, or a target renamed aside: put it right.
    recover_targets(fleet, namespace=namespace, services=services)
    if not started:  # past the redelivery cap: Failed in the same step that counted it
        log.error("restore %s: %s", restore_id, error)
        _report(fleet, restore_id, namespace, source_namespace, timestamp, status, error)
        return status

    progress: _Progress | None = None
    # Each service's duration, the recovery-time evidence (recorded once the result is ours).
    timer = RestoreTimer(
        fleet,
        restore_id=restore_id,
        namespace=namespace,
        source_namespace=source_namespace,
        timestamp=timestamp,
    )
    try:
        trusted = load_manifest(
            fleet, namespace=source_namespace, timestamp=timestamp, allow_unsigned=bool(note)
        )
        manifest = trusted.manifest
        if trusted.overridden:
            log.warning("restore %s: %s", restore_id, "; ".join(trusted.overridden))
        targets = fleet.config.services_of(namespace)
        keyring = crypto.Keyring.from_settings(fleet.settings)
        progress = _Progress(url, restore_id, manifest, services)
        _rehydrate(fleet, progress, manifest, services, source_namespace)
        for service in services:
            entries, spec = manifest.artifacts_of(service), targets.get(service)
            if not entries or spec is None:
                raise NotFoundError(f"service {service} is missing from the backup or the config")
            # Its own format's source: a base backup restores through a scratch server.
            source = restore_source(spec, entries[0], fleet.settings, fleet.secrets())
            if source.format != entries[0].format:
                raise SourceError(
                    f"{service} is a {entries[0].format} artifact, not {source.format}"
                )
            if target_time is not None and source.format == PGBASE:  # the WAL replayed to it
                replay_to(
                    source,
                    fleet,
                    namespace=source_namespace,
                    service=service,
                    timestamp=timestamp,
                    target=target_time,
                    say=progress.say,
                )
            log.info("restore %s: %s from %s/%s", restore_id, service, source_namespace, timestamp)

            def gate(service: str = service) -> None:
                try:
                    check_lock()
                except LockLost as lost:
                    raise LockLost(f"{lost}; stopped before {service} was changed") from None

            gate()
            try:
                moment = target_time if source.format == PGBASE else None
                with timer.service(service, spec.kind, progress.add, moment) as on_read:
                    restore_with_fallback(fleet, entries, source, keyring, on_read, gate)
                if target_time is not None:
                    progress.say(None)  # the WAL fetched and replayed: nothing waits now
            except LockLost:
                raise
            except Exception as exc:
                raise SourceError(f"{service}: {reason_of(exc)}") from exc
    except Exception as exc:
        error = redact(reason_of(exc), fleet.secrets())
        log.error("restore %s failed: %s", restore_id, error)

    status = FAILED if error else SUCCESS
    done = progress.done if progress is not None else None
    recorded = "; ".join(text for text in (note, error) if text) or None  # the override stays

    def finish(session: Session) -> bool:
        """Running -> the result, if this attempt still owns the row; True if it did."""
        values: dict[str, Any] = {"status": status, "error": recorded, "finished_at": utcnow()}
        if done is not None:
            values["bytes_done"] = done
        if queries.finish_restore_attempt(
            session, restore_id=restore_id, attempt=attempt, values=values
        ):
            return True
        row = session.get(Restore, restore_id)
        # A write retried after its commit went through (the reply was lost) finds its own result.
        mine = (attempt, status, recorded)
        return row is not None and (row.attempts, row.status, row.error) == mine

    patience = fleet.settings.catalog_retry_seconds
    if not write_catalog(url, finish, what="recording the restore's result", patience=patience):
        log.warning("restore %s: its result was recorded by another attempt first", restore_id)
        with session_scope(url) as session:
            row = session.get(Restore, restore_id)
            return row.status if row is not None else status
    timer.record()
    _report(fleet, restore_id, namespace, source_namespace, timestamp, status, error)
    return status


def _report(
    fleet: Fleet,
    restore_id: int,
    namespace: str,
    source_namespace: str,
    timestamp: str,
    status: str,
    error: str | None,
) -> None:
    """The alert and the audit event of a result this attempt recorded (never raises)."""
    report_restore_outcome(
        fleet,
        restore_id=restore_id,
        namespace=namespace,
        source_namespace=source_namespace,
        timestamp=timestamp,
        status=status,
        error=error,
    )
    restore_ended(fleet.settings.database_url, restore_id=restore_id)


def rehydrate_first(fleet: Fleet, *, restore_id: int) -> None:
    """Ask back the restore's archived artifacts and wait until they read, BEFORE the task
    takes the target namespace's lock: that wait may take hours, and holding the lock
    through it would hold off every backup and restore of the namespace (second review,
    finding 7). run_restore checks again (one HEAD per object) and fails with the reason if
    this could not finish; here a failure is only logged."""
    url = fleet.settings.database_url
    with session_scope(url) as session:
        restore = queries.get_restore(session, restore_id=restore_id)
        if restore is None or restore.status != PENDING:
            return  # gone, finished, or an attempt that runs already (a redelivery)
        note = override_of(restore.error)
        source_namespace, timestamp = restore.source_namespace, restore.timestamp
        services = list(restore.services)
    try:
        manifest = load_manifest(
            fleet, namespace=source_namespace, timestamp=timestamp, allow_unsigned=bool(note)
        ).manifest
        progress = _Progress(url, restore_id, manifest, services)
        _rehydrate(fleet, progress, manifest, services, source_namespace)
    except Exception as exc:
        log.warning("restore %s: %s", restore_id, redact(reason_of(exc), fleet.secrets()))


def _rehydrate(
    fleet: Fleet, progress: "_Progress", manifest: Manifest, services: list[str], namespace: str
) -> None:
    """Ask for every archived artifact of the restore at once, wait until all read (the row
    says how it goes), and record the class a rehydration left each in (Azure: Hot)."""
    keys = [entry.key for service in services for entry in manifest.artifacts_of(service)]
    wait = RehydrationWait.from_settings(fleet.settings)
    moved = wait_until_readable(fleet.store, keys, wait, progress.say)
    if moved:
        with session_scope(fleet.settings.database_url) as session:
            record_storage_classes(
                session,
                namespace=namespace,
                timestamp=manifest.timestamp,
                classes=moved,
                since=utcnow(),
            )


def restore_with_fallback(
    fleet: Fleet,
    entries: list[ArtifactEntry],
    source: Source,
    keyring: crypto.Keyring,
    on_read: Callable[[int], None],
    before_commit: Callable[[], None] | None = None,
) -> None:
    """From the primary store; from the secondary when the primary lost or corrupted an artifact.

    A source commits only after every byte verified, so a failed first attempt
    left the target as it was and the second starts clean.
    """
    try:
        restore_artifacts(
            store=fleet.store,
            entries=entries,
            source=source,
            keyring=keyring,
            on_read=on_read,
            before_commit=before_commit,
        )
    except LockLost:
        raise
    except Exception as exc:
        # A corrupt stream may first show as the tool's complaint: the hashes decide.
        if fleet.secondary is None or _intact(fleet.store, entries):
            raise
        log.warning(
            "%s: the primary store failed (%s); restoring from the secondary store",
            entries[0].service,
            redact(str(exc), fleet.secrets()),
        )
        restore_artifacts(
            store=fleet.secondary,
            entries=entries,
            source=source,
            keyring=keyring,
            on_read=on_read,
            before_commit=before_commit,
        )


def _intact(store: ObjectStore, entries: list[ArtifactEntry]) -> bool:
    """True if every artifact is in the store with its recorded size and SHA-256."""
    try:
        for entry in entries:
            check_stored(store, entry)
    except BackfleetError:
        return False
    return True


class _Progress:
    """Stored bytes read back so far, of all the services' artifacts, into the catalog."""

    def __init__(self, url: str, restore_id: int, manifest: Manifest, services: list[str]) -> None:
        self.done = 0
        self.url, self.restore_id = url, restore_id
        self.recorder = CatalogProgress(url, Restore, restore_id)
        total = sum(entry.size for service in services for entry in manifest.artifacts_of(service))
        with session_scope(url) as session:
            row = session.get(Restore, restore_id)
            if row is not None:
                row.bytes_total, row.bytes_done = total, 0

    def add(self, count: int) -> None:
        self.done += count
        self.recorder.update(self.done)

    def say(self, message: str | None) -> None:
        """What the restore waits for (None: nothing), on its row; never fails the restore."""
        try:
            with session_scope(self.url) as session:
                queries.set_restore_message(session, restore_id=self.restore_id, message=message)
        except Exception:  # progress is a courtesy
            log.debug("could not record the restore's message", exc_info=True)

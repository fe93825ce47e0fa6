"""One backup, start to finish: each service streamed to the store, the manifest last.

Safe to run again for the same backup (a redelivered task): a finished backup
is left alone; an artifact (or volume) already stored is kept (except the
volumes of a service whose `pre` hook runs again: they are dumped again from
the state it makes); an upload a dead attempt left is resumed from the parts
the catalog recorded, or aborted and started again; no row is ever duplicated.
"""

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

from billiard.exceptions import SoftTimeLimitExceeded

from workers.catalog import queries
from workers.catalog.attempts import StopJob, start_attempt
from workers.catalog.db import Session, session_scope, write_catalog
from workers.catalog.models import FAILED, RUNNING, SUCCESS, Artifact, Backup
from workers.catalog.part_ledger import PartLedger
from workers.catalog.progress import CatalogProgress
from workers.errors import NotFoundError, reason_of
from workers.fleet import Fleet
from workers.monitoring.notify import report_backup_outcome
from workers.monitoring.size_anomalies import check_backup_sizes
from workers.operations.hooks import hooks_around, hooks_deadline, run_owed_post
from workers.redact import redact
from workers.repository.manifest import ArtifactEntry, Manifest, artifact_key, manifest_key
from workers.repository.manifest_mac import MacKeys
from workers.retry import call_with_retries
from workers.services_config import ServiceSpec
from workers.sources import Source, make_source
from workers.stores.base import UploadedPart
from workers.timestamps import utcnow
from workers.transfer import crypto
from workers.transfer.budget import PartBudget
from workers.transfer.parts import StopCheck, TransferOptions
from workers.transfer.upload import DumpFactory, ResumePoint, StoredArtifact, upload_artifact
from workers.transfer.volumes import VolumeSource, VolumeSpan, back_up_volumes

log = logging.getLogger(__name__)
COMPRESSION: Literal["zstd"] = "zstd"
T = TypeVar("T")


@dataclass(frozen=True)
class BackupOutcome:
    namespace: str
    timestamp: str
    status: str
    error: str | None = None
    ran: bool = True  # False: a redelivery found the backup already finished


def run_backup(
    fleet: Fleet,
    *,
    namespace: str,
    timestamp: str,
    lock_lost: Callable[[], bool] = lambda: False,
    started: float | None = None,
) -> BackupOutcome:
    """Run (or resume) the backup; `lock_lost` says another holder took the namespace;
    `started` (time.monotonic()) is when the task began, whose time limits count from it."""
    stop_by = hooks_deadline(fleet.settings, time.monotonic() if started is None else started)
    url = fleet.settings.database_url
    with session_scope(url) as session:
        backup = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
        if backup is None:
            raise NotFoundError(
                f"backup {timestamp} of namespace {namespace} is not in the catalog"
            )
        if backup.status in (SUCCESS, FAILED):  # a redelivery of finished work
            return BackupOutcome(namespace, timestamp, backup.status, backup.error, ran=False)
        if not start_attempt(backup, max_redeliveries=fleet.settings.task_max_redeliveries):
            log.error("backup %s/%s: %s", namespace, timestamp, backup.error)
            return BackupOutcome(namespace, timestamp, FAILED, backup.error)
        backup_id, services = backup.id, list(backup.services)
        started_at, only_config, trigger = backup.started_at, backup.only_config, backup.trigger
    assert started_at is not None

    job = _ServiceBackups(fleet, backup_id, namespace, timestamp, stop_by)
    entries: list[ArtifactEntry] = []
    errors: list[str] = []
    for service in services:
        _stop_if(lock_lost, namespace, timestamp)
        try:
            entries.extend(job.back_up(service))
        except SoftTimeLimitExceeded:
            # The upload was aborted on the way out; the hard kill is near.
            errors.append(
                f"{service}: stopped by BACKUP_SOFT_TIME_LIMIT "
                f"({fleet.settings.backup_soft_time_limit} s)"
            )
            break
        except Exception as exc:
            message = describe(exc, fleet)
            errors.append(f"{service}: {message}")
            log.error("backup %s/%s: service %s failed: %s", namespace, timestamp, service, message)

    _stop_if(lock_lost, namespace, timestamp)
    manifest_sha256: str | None = None
    manifest_size: int | None = None
    if not errors:
        try:
            manifest = Manifest(
                namespace=namespace,
                timestamp=timestamp,
                only_config=only_config,
                trigger=trigger,
                started_at=started_at.isoformat(),
                finished_at=utcnow().isoformat(),
                artifacts=entries,
            )
            # Signed when a key is at hand; its digest goes to the catalog, and a restore
            # or verification refuses any other manifest (workers/repository/authenticity.py).
            data = manifest.to_bytes(MacKeys.from_settings(fleet.settings).current)
            call_with_retries(
                lambda: fleet.store.put_object(manifest_key(namespace, timestamp), data),
                policy=job.options.retry,
                what="manifest upload",
            )
            manifest_sha256, manifest_size = hashlib.sha256(data).hexdigest(), len(data)
        except Exception as exc:
            errors.append(f"manifest: {describe(exc, fleet)}")

    status = FAILED if errors else SUCCESS
    error = "; ".join(errors) or None

    def finish(session: Session) -> None:
        row = session.get(Backup, backup_id)
        assert row is not None
        row.status, row.error, row.finished_at = status, error, utcnow()
        row.size = sum(entry.size for entry in entries)
        row.manifest_sha256, row.manifest_size = manifest_sha256, manifest_size

    patience = fleet.settings.catalog_retry_seconds
    write_catalog(url, finish, what="recording the backup's result", patience=patience)
    report_backup_outcome(fleet, namespace, timestamp, status, error)  # alerts when Failed
    if status == SUCCESS:  # marks and alerts sizes unlike the service's history; never raises
        check_backup_sizes(
            fleet, backup_id=backup_id, namespace=namespace, timestamp=timestamp, services=services
        )
    return BackupOutcome(namespace, timestamp, status, error)


def _stop_if(lock_lost: Callable[[], bool], namespace: str, timestamp: str) -> None:
    if lock_lost():
        raise StopJob(f"backup {timestamp} of {namespace}: another holder took the namespace lock")


class _ServiceBackups:
    """Backs up one service after another into the artifacts of one backup row."""

    def __init__(
        self, fleet: Fleet, backup_id: int, namespace: str, timestamp: str, stop_by: float
    ) -> None:
        self.fleet, self.backup_id = fleet, backup_id
        self.namespace, self.timestamp = namespace, timestamp
        self.stop_by = stop_by  # no hook runs past it (operations/hooks.py: hooks_deadline)
        self.url = fleet.settings.database_url
        self.keyring = crypto.Keyring.from_settings(fleet.settings)
        self.options = TransferOptions.from_settings(fleet.settings, self.keyring)

    def back_up(self, service: str) -> list[ArtifactEntry]:
        spec = self.fleet.config.services_of(self.namespace).get(service)
        if spec is None:
            raise NotFoundError(f"service {service} is no longer in the services file")
        if spec.hooks is not None and (stored := self._stored_already(service)):
            # A redelivery: nothing of this service is dumped again, so `pre` does not run
            # again; `post` does if the lost attempt's did not end (it puts things back).
            log.info(
                "backup %s/%s: service %s was stored by an earlier attempt: its pre hook "
                "does not run again",
                self.namespace,
                self.timestamp,
                service,
            )
            self._drop_volumes_after(service, len(stored))
            run_owed_post(
                self.fleet,
                spec,
                backup_id=self.backup_id,
                namespace=self.namespace,
                timestamp=self.timestamp,
                stop_by=self.stop_by,
            )
            return stored
        if spec.hooks is not None and spec.hooks.pre and self._stored_any(service):
            # `pre` runs again (a new snapshot): the volumes an earlier attempt stored were
            # read from the state its `pre` made; kept, the service would mix two points in
            # time. The whole service is dumped again from the new one.
            log.info(
                "backup %s/%s: service %s: the volumes an earlier attempt stored are dumped "
                "again after its pre hook",
                self.namespace,
                self.timestamp,
                service,
            )
            self._drop_volumes_after(service, 0)
        # `pre` before the source is built (it may make what the dump reads), `post` after
        # the dump whatever happened (workers/operations/hooks.py).
        with hooks_around(
            self.fleet,
            spec,
            backup_id=self.backup_id,
            namespace=self.namespace,
            timestamp=self.timestamp,
            stop_by=self.stop_by,
        ):
            return self._dump(spec, service)

    def _dump(self, spec: ServiceSpec, service: str) -> list[ArtifactEntry]:
        source = make_source(spec, self.fleet.settings, self.fleet.secrets())
        if not source.volumes:  # declared by the kind (sources/base.py)
            return [self._artifact(source, service, 1, source.dump)]
        # A large directory goes in volumes, several at once, each starting after
        # the last entry of the one before, so a redelivered backup resumes at the
        # first unfinished one (workers/transfer/volumes.py).
        settings = self.fleet.settings

        def store_volume(
            volume: int,
            open_dump: DumpFactory,
            span: VolumeSpan,
            should_stop: StopCheck,
            budget: PartBudget,
        ) -> ArtifactEntry:
            return self._artifact(
                source,
                service,
                volume,
                open_dump,
                span=span,
                should_stop=should_stop,
                budget=budget,
            )

        entries = back_up_volumes(
            cast(VolumeSource, source),
            finished=self._finished_volumes(service),
            max_bytes=settings.backup_volume_size,
            concurrency=settings.backup_volume_concurrency,
            part_concurrency=self.options.concurrency,
            store_volume=store_volume,
        )
        self._drop_volumes_after(service, len(entries))
        return entries

    def _stored_already(self, service: str) -> list[ArtifactEntry]:
        """Every artifact of the service, if an earlier attempt of this backup stored them all."""
        finished = self._finished_volumes(service)
        return finished if finished and finished[-1].source.get("final", True) else []

    def _stored_any(self, service: str) -> bool:
        """Whether an earlier attempt stored any artifact (volume) of the service."""
        with session_scope(self.url) as session:
            backup = session.get(Backup, self.backup_id)
            assert backup is not None
            return any(r.service == service and r.status == SUCCESS for r in backup.artifacts)

    def _finished_volumes(self, service: str) -> list[ArtifactEntry]:
        """The volumes a dead attempt finished that chain from the first (transfer/volumes.py)."""
        with session_scope(self.url) as session:
            backup = session.get(Backup, self.backup_id)
            assert backup is not None
            rows = sorted((r for r in backup.artifacts if r.service == service), key=_volume)
            finished: list[ArtifactEntry] = []
            after: str | None = None
            for number, row in enumerate(rows, start=1):
                facts = row.facts or {}
                if row.volume != number or row.status != SUCCESS or row.sha256 is None:
                    break
                # A volume stored before `after` was recorded chains: volumes went one by one.
                if facts.get("after", after) != after:
                    break
                finished.append(_entry_from_row(row))
                if facts.get("final", True):
                    break
                after = facts.get("last")
            return finished

    def _artifact(
        self,
        source: Source,
        service: str,
        volume: int,
        open_dump: DumpFactory,
        *,
        span: VolumeSpan | None = None,
        should_stop: StopCheck | None = None,
        budget: PartBudget | None = None,
    ) -> ArtifactEntry:
        encrypted = self.options.identity is not None
        key = artifact_key(
            self.namespace,
            self.timestamp,
            service,
            source.format,
            COMPRESSION,
            encrypted=encrypted,
            volume=volume,
        )
        with session_scope(self.url) as session:
            backup = session.get(Backup, self.backup_id)
            assert backup is not None
            row = queries.upsert_artifact(
                session,
                backup=backup,
                service=service,
                kind=source.kind,
                key=key,
                fmt=source.format,
                compression=COMPRESSION,
                volume=volume,
            )
            finished = row.status == SUCCESS and row.sha256 is not None
            # A volume a dead attempt stored for other entries than this one's is redone.
            if finished and (span is None or span.matches(row.facts or {})):
                return _entry_from_row(row)  # stored by an earlier attempt
            resume = _resume_point(row)
            row.status, row.started_at, row.error, row.key = RUNNING, utcnow(), None, key
            artifact_id = row.id

        progress = CatalogProgress(self.url, Artifact, artifact_id)
        ledger = PartLedger(artifact_id, self._write)
        try:
            stored = upload_artifact(
                store=self.fleet.store,
                key=key,
                open_dump=open_dump,
                options=self.options,
                resume=resume,
                on_upload=lambda upload_id: self._record_upload(artifact_id, upload_id),
                on_part=ledger.add,
                on_progress=progress.update,
                budget=budget,
                should_stop=should_stop,
            )
        except Exception as exc:
            reason = describe(exc, self.fleet)

            def record_failure(session: Session) -> None:
                failed = session.get(Artifact, artifact_id)
                assert failed is not None
                failed.status, failed.finished_at = FAILED, utcnow()
                failed.error, failed.upload_id = reason, None
                queries.forget_parts(session, artifact_id=artifact_id)

            self._write(record_failure, "recording a failed artifact")
            raise
        return self._record_success(artifact_id, service, volume, source, stored)

    def _write(self, change: Callable[[Session], T], what: str) -> T:
        patience = self.fleet.settings.catalog_retry_seconds
        return write_catalog(self.url, change, what=what, patience=patience)

    def _record_upload(self, artifact_id: int, upload_id: str) -> None:
        def record(session: Session) -> None:
            row = session.get(Artifact, artifact_id)
            assert row is not None
            row.upload_id, row.part_size = upload_id, self.options.part_size
            queries.forget_parts(session, artifact_id=artifact_id)

        self._write(record, "recording an upload id")

    def _record_success(
        self, artifact_id: int, service: str, volume: int, source: Source, stored: StoredArtifact
    ) -> ArtifactEntry:
        def record(session: Session) -> ArtifactEntry:
            row = session.get(Artifact, artifact_id)
            assert row is not None
            row.status, row.finished_at, row.upload_id = SUCCESS, utcnow(), None
            row.size, row.source_size, row.sha256 = stored.size, stored.source_size, stored.sha256
            row.storage_class = self.fleet.store.default_storage_class  # the tier it is in
            row.bytes_done, row.facts, row.encryption = (
                stored.source_size,
                stored.facts,
                stored.encryption,
            )
            queries.forget_parts(session, artifact_id=artifact_id)
            return _entry_from_row(row)

        return self._write(record, "recording a stored artifact")

    def _drop_volumes_after(self, service: str, last: int) -> None:
        """Volumes a dead attempt made beyond the last one of this walk: abort and forget."""
        with session_scope(self.url) as session:
            backup = session.get(Backup, self.backup_id)
            assert backup is not None
            for row in list(backup.artifacts):
                if row.service == service and row.volume > last:
                    if row.upload_id:
                        self.fleet.store.abort_upload(row.key, row.upload_id)
                    session.delete(row)


def _volume(row: Artifact) -> int:
    return row.volume


def _resume_point(row: Artifact) -> ResumePoint | None:
    if not row.upload_id or row.status == SUCCESS:
        return None
    parts = [
        UploadedPart(number=p.number, size=p.size, etag=p.etag, sha256=p.sha256) for p in row.parts
    ]
    return ResumePoint(upload_id=row.upload_id, part_size=row.part_size or 0, parts=parts)


def _entry_from_row(row: Artifact) -> ArtifactEntry:
    assert row.size is not None and row.sha256 is not None and row.source_size is not None
    return ArtifactEntry(
        service=row.service,
        volume=row.volume,
        key=row.key,
        format=row.format,
        compression="zstd" if row.compression == "zstd" else "none",
        encryption=row.encryption,
        size=row.size,
        sha256=row.sha256,
        source_size=row.source_size,
        source=row.facts or {},
    )


def describe(exc: BaseException, fleet: Fleet) -> str:
    """An operator-readable reason, with every known secret masked."""
    return redact(reason_of(exc), fleet.secrets())

"""One volume of a service stored as one artifact of a backup: its catalog row first, the
upload (resumed from the parts a dead attempt recorded, or started again), then the row's
outcome; and the manifest entry a stored row makes."""

from collections.abc import Callable
from typing import Literal, TypeVar

from workers.catalog import queries
from workers.catalog.db import Session, session_scope, write_catalog
from workers.catalog.models import FAILED, RUNNING, SUCCESS, Artifact, Backup
from workers.catalog.part_ledger import PartLedger
from workers.catalog.progress import CatalogProgress
from workers.fleet import Fleet
from workers.operations.backup.outcome import describe
from workers.repository.manifest import ArtifactEntry, artifact_key
from workers.sources import Source
from workers.stores.base import UploadedPart
from workers.timestamps import utcnow
from workers.transfer.budget import PartBudget
from workers.transfer.parts import StopCheck, TransferOptions
from workers.transfer.upload import DumpFactory, ResumePoint, StoredArtifact, upload_artifact
from workers.transfer.volumes import VolumeSpan

COMPRESSION: Literal["zstd"] = "zstd"
T = TypeVar("T")


class ArtifactWriter:
    """Stores the artifacts of one backup row, one volume at a time."""

    def __init__(
        self,
        fleet: Fleet,
        backup_id: int,
        namespace: str,
        timestamp: str,
        options: TransferOptions,
    ) -> None:
        self.fleet, self.backup_id = fleet, backup_id
        self.namespace, self.timestamp = namespace, timestamp
        self.url = fleet.settings.database_url
        self.options = options

    def store(
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
                return entry_from_row(row)  # stored by an earlier attempt
            resume = resume_point(row)
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
            return entry_from_row(row)

        return self._write(record, "recording a stored artifact")


def volume_of(row: Artifact) -> int:
    return row.volume


def resume_point(row: Artifact) -> ResumePoint | None:
    if not row.upload_id or row.status == SUCCESS:
        return None
    parts = [
        UploadedPart(number=p.number, size=p.size, etag=p.etag, sha256=p.sha256) for p in row.parts
    ]
    return ResumePoint(upload_id=row.upload_id, part_size=row.part_size or 0, parts=parts)


def entry_from_row(row: Artifact) -> ArtifactEntry:
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

"""One backup, start to finish: each service streamed to the store, the manifest last.

Safe to run again for the same backup (a redelivered task): a finished backup
is left alone, and an artifact row is reused rather than duplicated.
"""

import logging
from dataclasses import dataclass
from typing import Literal

from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.models import FAILED, RUNNING, SUCCESS, Artifact, Backup
from workers.errors import BackfleetError, NotFoundError
from workers.fleet import Fleet
from workers.manifest import ArtifactEntry, Manifest, artifact_key, manifest_key
from workers.pipeline import store_artifact
from workers.redact import redact
from workers.sources import make_source
from workers.timestamps import utcnow

log = logging.getLogger(__name__)
COMPRESSION: Literal["zstd"] = "zstd"


@dataclass(frozen=True)
class BackupOutcome:
    namespace: str
    timestamp: str
    status: str
    error: str | None = None


def run_backup(fleet: Fleet, *, namespace: str, timestamp: str) -> BackupOutcome:
    url = fleet.settings.database_url
    with session_scope(url) as session:
        backup = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
        if backup is None:
            raise NotFoundError(
                f"backup {timestamp} of namespace {namespace} is not in the catalog"
            )
        if backup.status in (SUCCESS, FAILED):  # a redelivery of finished work
            return BackupOutcome(namespace, timestamp, backup.status, backup.error)
        backup.status, backup.started_at = RUNNING, backup.started_at or utcnow()
        backup_id, services = backup.id, list(backup.services)
        started_at, only_config, trigger = backup.started_at, backup.only_config, backup.trigger

    entries: list[ArtifactEntry] = []
    errors: list[str] = []
    for service in services:
        try:
            entries.append(_back_up_service(fleet, backup_id, namespace, timestamp, service))
        except Exception as exc:
            message = _describe(exc, fleet)
            errors.append(f"{service}: {message}")
            log.error("backup %s/%s: service %s failed: %s", namespace, timestamp, service, message)

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
            fleet.store.put_object(manifest_key(namespace, timestamp), manifest.to_bytes())
        except Exception as exc:
            errors.append(f"manifest: {_describe(exc, fleet)}")

    with session_scope(url) as session:
        row = session.get(Backup, backup_id)
        assert row is not None
        row.finished_at = utcnow()
        row.status = FAILED if errors else SUCCESS
        row.error = "; ".join(errors) or None
        row.size = sum(entry.size for entry in entries)
    return BackupOutcome(
        namespace, timestamp, FAILED if errors else SUCCESS, "; ".join(errors) or None
    )


def _back_up_service(
    fleet: Fleet, backup_id: int, namespace: str, timestamp: str, service: str
) -> ArtifactEntry:
    spec = fleet.config.services_of(namespace).get(service)
    if spec is None:
        raise NotFoundError(f"service {service} is no longer in the services file")
    source = make_source(spec, fleet.settings)
    key = artifact_key(namespace, timestamp, service, source.format, COMPRESSION)
    url = fleet.settings.database_url
    with session_scope(url) as session:
        backup = session.get(Backup, backup_id)
        assert backup is not None
        artifact = queries.upsert_artifact(
            session,
            backup=backup,
            service=service,
            kind=source.kind,
            key=key,
            fmt=source.format,
            compression=COMPRESSION,
        )
        artifact.status, artifact.started_at, artifact.error = RUNNING, utcnow(), None
        artifact_id = artifact.id
    try:
        stored = store_artifact(
            store=fleet.store,
            key=key,
            source=source,
            part_size=fleet.settings.backup_part_size,
            compression_level=fleet.settings.backup_compression_level,
        )
    except Exception as exc:
        with session_scope(url) as session:
            row = session.get(Artifact, artifact_id)
            assert row is not None
            row.status, row.finished_at, row.error = FAILED, utcnow(), _describe(exc, fleet)
        raise
    with session_scope(url) as session:
        row = session.get(Artifact, artifact_id)
        assert row is not None
        row.status, row.finished_at = SUCCESS, utcnow()
        row.size, row.source_size, row.sha256 = stored.size, stored.source_size, stored.sha256
        row.facts = stored.facts
    return ArtifactEntry(
        service=service,
        key=key,
        format=source.format,
        compression=COMPRESSION,
        encryption=None,
        size=stored.size,
        sha256=stored.sha256,
        source_size=stored.source_size,
        source=stored.facts,
    )


def _describe(exc: BaseException, fleet: Fleet) -> str:
    """An operator-readable reason, with every known secret masked."""
    text = str(exc) if isinstance(exc, BackfleetError) else f"{type(exc).__name__}: {exc}"
    return redact(text, fleet.secrets())

"""A backup settled from the store: its manifest must be there, complete and authentic;
then the catalog takes in its artifacts and its digest."""

import hashlib
from typing import Any

from workers.catalog import queries
from workers.catalog.db import Session, session_scope
from workers.catalog.models import SUCCESS, Artifact, Backup
from workers.errors import BackfleetError
from workers.fleet import Fleet
from workers.operations.reconcile.rows import Job
from workers.repository.authenticity import MAX_MANIFEST_BYTES
from workers.repository.manifest import ArtifactEntry, Manifest, manifest_key, parse_manifest
from workers.repository.manifest_mac import MacKeys
from workers.repository.manifest_mac import verify as verify_mac
from workers.timestamps import utcnow


class Incomplete(BackfleetError):
    pass


def complete_manifest(fleet: Fleet, job: Job) -> tuple[Manifest, bytes]:
    """The backup's manifest and its bytes, if it is there, authentic, and every artifact is
    stored. Authentic: a valid MAC from the fleet's keys, or exactly the artifacts the
    catalog recorded as stored; else it may be an attacker's, and the catalog (which a
    restore then trusts) must not take it in."""
    key = manifest_key(job.namespace, job.timestamp)
    if not fleet.store.exists(key):
        raise Incomplete("no manifest in the store")
    with fleet.store.open_read(key) as handle:
        data = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise Incomplete("the manifest is larger than any manifest we write")
    manifest, document = parse_manifest(data)
    with session_scope(fleet.settings.database_url) as session:
        row = session.get(Backup, job.row_id)
        services = set(row.services) if row is not None else set()
        only_config = row.only_config if row is not None else None
        rows = list(row.artifacts) if row is not None else []
        recorded = {(a.service, a.volume): a.sha256 for a in rows}
        stored_rows = {(a.service, a.volume): _facts(a) for a in rows if _stored(a)}
    if (manifest.namespace, manifest.timestamp) != (job.namespace, job.timestamp):
        raise Incomplete("the manifest names another backup")
    if set(manifest.services()) != services:
        raise Incomplete("the manifest's services differ from the backup's")
    stored = {info.key: info.size for info in fleet.store.list(key.rsplit("/", 1)[0] + "/")}
    for entry in manifest.artifacts:
        if stored.get(entry.key) != entry.size:
            raise Incomplete(f"artifact {entry.key} is missing or not {entry.size} bytes")
        known = recorded.get((entry.service, entry.volume))
        if known is not None and known != entry.sha256:
            raise Incomplete(f"artifact {entry.key} differs from the catalog's record")
    listed = {(entry.service, entry.volume): _facts(entry) for entry in manifest.artifacts}
    as_recorded = listed == stored_rows and manifest.only_config == only_config
    if not (as_recorded or verify_mac(document, MacKeys.from_settings(fleet.settings))):
        raise Incomplete(
            "its manifest cannot be authenticated: it carries no valid MAC from this fleet's "
            "keys and does not list exactly the artifacts the catalog recorded as stored"
        )
    return manifest, data


def _stored(artifact: Artifact) -> bool:
    return artifact.status == SUCCESS and artifact.sha256 is not None


def _facts(item: Artifact | ArtifactEntry) -> tuple[Any, ...]:
    """What a restore uses of an artifact, from a catalog row or a manifest entry."""
    source = item.source if isinstance(item, ArtifactEntry) else item.facts or {}
    return (
        item.key,
        item.size,
        item.sha256,
        item.format,
        item.compression,
        item.encryption,
        item.source_size,
        source,
    )


def fill_from_manifest(session: Session, row: Backup, manifest: Manifest, data: bytes) -> None:
    """The catalog's artifacts as the manifest lists them, and the backup's size."""
    for entry in manifest.artifacts:
        artifact = queries.upsert_artifact(
            session,
            backup=row,
            service=entry.service,
            kind=str(entry.source.get("kind") or entry.format),
            key=entry.key,
            fmt=entry.format,
            compression=entry.compression,
            volume=entry.volume,
        )
        artifact.status, artifact.key, artifact.size = SUCCESS, entry.key, entry.size
        artifact.sha256, artifact.source_size = entry.sha256, entry.source_size
        artifact.facts, artifact.encryption = entry.source, entry.encryption
        artifact.upload_id, artifact.error = None, None
        artifact.bytes_done = entry.source_size
        artifact.finished_at = artifact.finished_at or utcnow()
    listed = {(entry.service, entry.volume) for entry in manifest.artifacts}
    for artifact in list(row.artifacts):
        if (artifact.service, artifact.volume) not in listed:
            session.delete(artifact)
    row.size = sum(entry.size for entry in manifest.artifacts)
    # Authenticated by complete_manifest: from now on a restore accepts only these bytes.
    row.manifest_sha256, row.manifest_size = hashlib.sha256(data).hexdigest(), len(data)

"""What the store holds, from the catalog: stored bytes per namespace, service, tier and
kind.

Counted: every successful artifact of every successful backup still in the catalog
(retention deletes a backup's row with its objects), at its stored size (compressed,
encrypted: what the store bills), and each of those backups' manifest.json (its size is
recorded since catalog revision 0012; older manifests count as objects of 0 bytes, a
few KiB each in truth): kind `backup`; and the WAL files of `pitr` services in the
catalog (segments, the growing partial, history files; in the store's default class):
kind `wal`. Not counted: objects of Failed backups (artifacts stored before another
service failed: retention leaves Failed backups alone), unfinished multipart uploads,
shipped user events, the secondary store. Keyword-only like queries.py; callers
own the session.
"""

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workers.catalog.models import SUCCESS, Artifact, Backup, WalSegment

# The service the manifests are counted under: an object name, never a service's (a
# service name is a DNS label, which has no dot).
MANIFESTS = "manifest.json"
# StoredBytes.kind: a backup's objects (its artifacts, the manifests), or streamed WAL.
BACKUP, WAL = "backup", "wal"


@dataclass(frozen=True)
class StoredBytes:
    namespace: str
    service: str  # or MANIFESTS
    tier: str | None  # the storage class; None: the store's default (rows from before 0012)
    objects: int
    size: int  # bytes
    kind: str = BACKUP  # or WAL


def stored_bytes(session: Session, *, namespace: str | None = None) -> list[StoredBytes]:
    """Stored bytes and objects per namespace, service, tier and kind (three grouped
    queries), in namespace, service, kind, tier order."""
    artifacts = (
        select(
            Backup.namespace,
            Artifact.service,
            Artifact.storage_class,
            func.count(Artifact.id),
            func.coalesce(func.sum(Artifact.size), 0),
        )
        .join(Artifact)
        .where(Backup.status == SUCCESS, Artifact.status == SUCCESS)
        .group_by(Backup.namespace, Artifact.service, Artifact.storage_class)
    )
    manifests = (
        select(
            Backup.namespace,
            func.count(Backup.id),
            func.coalesce(func.sum(Backup.manifest_size), 0),
        )
        .where(Backup.status == SUCCESS)
        .group_by(Backup.namespace)
    )
    wal = select(
        WalSegment.namespace,
        WalSegment.service,
        func.count(WalSegment.id),
        func.coalesce(func.sum(WalSegment.size), 0),
    ).group_by(WalSegment.namespace, WalSegment.service)
    if namespace is not None:
        artifacts = artifacts.where(Backup.namespace == namespace)
        manifests = manifests.where(Backup.namespace == namespace)
        wal = wal.where(WalSegment.namespace == namespace)
    rows = [
        StoredBytes(ns, service, tier, int(count), int(size or 0))
        for ns, service, tier, count, size in session.execute(artifacts)
    ]
    rows += [
        StoredBytes(ns, MANIFESTS, None, int(count), int(size or 0))
        for ns, count, size in session.execute(manifests)
    ]
    rows += [
        StoredBytes(ns, service, None, int(count), int(size or 0), WAL)
        for ns, service, count, size in session.execute(wal)
    ]
    return sorted(rows, key=lambda row: (row.namespace, row.service, row.kind, row.tier or ""))

"""Which manifests a restore, a verification or a test restore may use: only authentic ones.

Every reader of a backup goes through `load_manifest`. A manifest is used when

1. the catalog recorded the SHA-256 of the manifest this fleet wrote
   (`backups.manifest_sha256`) and the stored bytes have exactly that digest; any
   other manifest for that backup is refused, MAC or override notwithstanding;
2. the catalog knows the backup but predates the digest: every artifact's key,
   size and SHA-256 must be the catalog's artifact rows (or the MAC must hold);
3. the catalog does not know the backup (another cluster, an empty catalog, a
   sourceNamespace restore): its MAC must be valid under a key the fleet holds
   (workers/repository/manifest_mac.py);
4. else only with the caller's explicit, audited override (`allowUnsigned`).

Whatever the basis, the manifest must describe the backup asked for, and each
artifact key must lie under `<namespace>/<timestamp>/` (a manifest may not
point at another tenant's objects). With BACKUP_ENCRYPTION_KEY set, an
unencrypted artifact is refused unless the catalog recorded that very artifact
as written plain (before encryption was turned on) or the caller overrides.
"""

import hashlib
import logging
from dataclasses import dataclass, field

from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.models import SUCCESS
from workers.errors import IntegrityError, NotFoundError
from workers.fleet import Fleet
from workers.repository.manifest import Manifest, backup_prefix, manifest_key, parse_manifest
from workers.repository.manifest_mac import MacKeys
from workers.repository.manifest_mac import verify as verify_mac
from workers.stores.base import ObjectStore

log = logging.getLogger(__name__)

# A manifest is a few KiB (a line per artifact); this bounds what a forged one can make us hold.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
# How the manifest was authenticated.
BY_DIGEST = "catalog digest"
BY_ARTIFACTS = "catalog artifacts"
BY_MAC = "MAC"
BY_OVERRIDE = "override"


@dataclass(frozen=True)
class TrustedManifest:
    manifest: Manifest
    data: bytes  # the stored bytes, as read (a copy elsewhere must be these)
    basis: str  # BY_DIGEST, BY_ARTIFACTS, BY_MAC or BY_OVERRIDE
    overridden: list[str] = field(default_factory=list)  # what the override let through


@dataclass(frozen=True)
class _Artifact:
    size: int | None
    sha256: str | None
    encrypted: bool


@dataclass(frozen=True)
class _Record:
    """What the catalog holds of one backup."""

    digest: str | None
    artifacts: dict[str, _Artifact]


def load_manifest(
    fleet: Fleet,
    *,
    namespace: str,
    timestamp: str,
    store: ObjectStore | None = None,
    allow_unsigned: bool = False,
) -> TrustedManifest:
    """The authentic manifest from `store` (default: the primary, else the secondary).

    NotFoundError if it is in no store; IntegrityError if it may not be used.
    """
    key = manifest_key(namespace, timestamp)
    # The secondary store may hold a backup the primary lost or no longer keeps.
    stores = [store] if store is not None else [fleet.store, fleet.secondary]
    for candidate in stores:
        if candidate is not None and candidate.exists(key):
            with candidate.open_read(key) as handle:
                data = handle.read(MAX_MANIFEST_BYTES + 1)
            break
    else:
        if store is not None:  # a verification of one copy
            raise NotFoundError(f"the manifest {key} is missing")
        raise NotFoundError(f"no backup {timestamp} of namespace {namespace} in the store")
    return authenticate(
        fleet, data, namespace=namespace, timestamp=timestamp, allow_unsigned=allow_unsigned
    )


def authenticate(
    fleet: Fleet, data: bytes, *, namespace: str, timestamp: str, allow_unsigned: bool = False
) -> TrustedManifest:
    """Check stored manifest bytes against the catalog, the MAC keys and the rules above."""
    where = f"backup {timestamp} of namespace {namespace}"
    if len(data) > MAX_MANIFEST_BYTES:
        raise IntegrityError(f"the manifest of {where} is larger than any manifest we write")
    try:
        manifest, document = parse_manifest(data)
    except IntegrityError as exc:
        raise IntegrityError(f"the manifest of {where}: {exc}") from None
    _check_scope(manifest, namespace, timestamp, where)
    record = _catalog_record(fleet, namespace, timestamp)
    overridden: list[str] = []
    if record is not None and record.digest is not None:
        if hashlib.sha256(data).hexdigest() != record.digest:
            raise IntegrityError(
                f"the manifest of {where} is not the one this fleet wrote (its SHA-256 differs "
                "from the catalog's): it was changed in the store; refusing it"
            )
        basis = BY_DIGEST
    elif record is not None and _same_artifacts(manifest, record):
        basis = BY_ARTIFACTS
    elif verify_mac(document, MacKeys.from_settings(fleet.settings)):
        basis = BY_MAC
    elif record is not None:
        raise IntegrityError(
            f"the manifest of {where} lists other artifacts than the catalog recorded, "
            "and carries no valid MAC: refusing it"
        )
    elif allow_unsigned:
        basis = BY_OVERRIDE
        overridden.append(f"the manifest of {where} is not in the catalog and carries no valid MAC")
    else:
        raise IntegrityError(
            f"the manifest of {where} cannot be authenticated: the catalog has no record of "
            "it and it carries no valid MAC from BACKUP_SIGNING_KEY or BACKUP_ENCRYPTION_KEY "
            "(restore it anyway only if you trust the store: allowUnsigned / --allow-unsigned)"
        )
    if record is not None:
        _check_against_catalog(manifest, record, where)
    overridden += _check_encryption(fleet, manifest, record, where, allow_unsigned=allow_unsigned)
    for reason in overridden:
        log.warning("allowUnsigned: accepting %s", reason)
    return TrustedManifest(manifest=manifest, data=data, basis=basis, overridden=overridden)


def _check_scope(manifest: Manifest, namespace: str, timestamp: str, where: str) -> None:
    if (manifest.namespace, manifest.timestamp) != (namespace, timestamp):
        raise IntegrityError(f"the manifest of {where} describes another backup: refusing it")
    prefix = backup_prefix(namespace, timestamp)
    for entry in manifest.artifacts:
        name = entry.key.removeprefix(prefix)
        parts = name.split("/")
        if (
            name == entry.key
            or entry.key == manifest_key(namespace, timestamp)
            or any(part in ("", ".", "..") for part in parts)
        ):
            raise IntegrityError(
                f"the manifest of {where} names an object outside {prefix}: refusing it"
            )


def _catalog_record(fleet: Fleet, namespace: str, timestamp: str) -> _Record | None:
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
        if backup is None:
            return None
        artifacts = {
            row.key: _Artifact(row.size, row.sha256, row.encryption is not None)
            for row in backup.artifacts
            if row.status == SUCCESS and row.sha256 is not None
        }
        return _Record(digest=backup.manifest_sha256, artifacts=artifacts)


def _check_against_catalog(manifest: Manifest, record: _Record, where: str) -> None:
    """An artifact the catalog recorded must be listed with the catalog's size and SHA-256."""
    for entry in manifest.artifacts:
        known = record.artifacts.get(entry.key)
        if known is not None and (known.size, known.sha256) != (entry.size, entry.sha256):
            raise IntegrityError(
                f"the manifest of {where} and the catalog disagree on {entry.key}'s size "
                "or SHA-256: refusing it"
            )


def _same_artifacts(manifest: Manifest, record: _Record) -> bool:
    """A backup recorded before manifest digests: its artifacts must be the catalog's."""
    listed = {(entry.key, entry.size, entry.sha256) for entry in manifest.artifacts}
    recorded = {(key, row.size, row.sha256) for key, row in record.artifacts.items()}
    return bool(listed) and listed == recorded


def _check_encryption(
    fleet: Fleet, manifest: Manifest, record: _Record | None, where: str, *, allow_unsigned: bool
) -> list[str]:
    """With encryption configured, a plain artifact only if this fleet wrote it plain."""
    if fleet.settings.backup_encryption_key is None:
        return []
    overridden = []
    for entry in manifest.artifacts:
        if entry.encryption is not None:
            continue
        known = record.artifacts.get(entry.key) if record is not None else None
        if known is not None and not known.encrypted and known.sha256 == entry.sha256:
            continue  # stored before BACKUP_ENCRYPTION_KEY was set, as the catalog recorded
        what = f"the unencrypted artifact {entry.key} of {where}"
        if not allow_unsigned:
            raise IntegrityError(
                f"{what} is refused: BACKUP_ENCRYPTION_KEY is set and this fleet did not "
                "write it plain (allowUnsigned / --allow-unsigned to restore it anyway)"
            )
        overridden.append(what)
    return overridden

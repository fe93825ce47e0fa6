"""Storage classes on S3: where an object is, moving it colder, bringing an archived one
back (RestoreObject), extending its Object Lock, and what S3 says of it without a read.

A move is a copy of the object onto itself with the new StorageClass, by the same routine
that gives a multipart object its SHA-256 (digests.py: one CopyObject up to 5 GiB,
UploadPartCopy ranges beyond, guarded by the ETag just read), keeping its user metadata,
its encryption (a copy keeps neither unless given again) and, with a CRC32, CRC32C or
SHA256 AWS_S3_CHECKSUM_ALGORITHM, a checksum S3 computes over the whole copy. Its Object
Lock retention is given back afterwards with PutObjectRetention on the new version (see
`_keep_lock` for why not in the copy). On a versioned bucket (every Object Lock bucket)
the copy is a new version and the old one stays, noncurrent: it is deleted by its
VersionId when nothing locks it; a locked one cannot be, and stays until its retention
ends and a NoncurrentVersionExpiration lifecycle rule removes it (the README says how).

S3 copies no GLACIER or DEEP_ARCHIVE object that is not restored, so an archived object
is never moved on (settings.check_classes refuses a mapping that would need it).
"""

import base64
import logging
from datetime import datetime
from typing import Any, ClassVar

from workers.errors import BackfleetError, ConfigError, NotFoundError, PermanentError
from workers.stores.base import StoredFacts, check_key
from workers.stores.s3.digests import sha256_in
from workers.stores.s3.multipart import S3Multipart

log = logging.getLogger(__name__)

# What GetObjectAttributes may report, under its S3 names; each as the store computed it.
CHECKSUM_NAMES = ("SHA256", "CRC32", "CRC32C", "CRC64NVME", "SHA1")
RESTORED, RESTORING = 'ongoing-request="false"', 'ongoing-request="true"'


def class_in(head: dict[str, Any]) -> str:
    """The storage class a HeadObject reports (S3 leaves STANDARD out)."""
    return str(head.get("StorageClass") or "STANDARD")


def encryption_in(head: dict[str, Any]) -> dict[str, Any]:
    """The object's own server-side encryption, for a copy to keep it (a copy takes the
    bucket's default otherwise)."""
    params: dict[str, Any] = {}
    if head.get("ServerSideEncryption"):
        params["ServerSideEncryption"] = head["ServerSideEncryption"]
    if head.get("SSEKMSKeyId"):
        params["SSEKMSKeyId"] = head["SSEKMSKeyId"]
    return params


def lock_in_force(head: dict[str, Any], now: datetime) -> bool:
    until = head.get("ObjectLockRetainUntilDate")
    held = head.get("ObjectLockLegalHoldStatus") == "ON"
    return held or (isinstance(until, datetime) and until > now)


def full_object_checksums(attributes: dict[str, Any]) -> dict[str, str]:
    """GetObjectAttributes' checksums of the whole object, hex; a multipart upload's
    COMPOSITE checksum (a hash of its parts' hashes) is not the object's and is left out."""
    checksum = attributes.get("Checksum") or {}
    kind = str(checksum.get("ChecksumType") or "")
    if kind == "COMPOSITE" or (not kind and attributes.get("ObjectParts")):
        return {}
    found = {}
    for name in CHECKSUM_NAMES:
        value = checksum.get(f"Checksum{name}")
        if value and "-" not in str(value):  # `…-3`: a composite one, whatever the type says
            found[name] = base64.b64decode(str(value)).hex()
    return found


class S3Tiers(S3Multipart):
    """Storage classes, rehydration and lock extension (store.py declares the classes)."""

    storage_classes: ClassVar[tuple[str, ...]]
    archive_classes: ClassVar[frozenset[str]]

    def _must_head(self, key: str) -> dict[str, Any]:
        head = self._head(check_key(key))
        if head is None:
            raise NotFoundError(f"object {self._where(key)} does not exist")
        return head

    def storage_class_of(self, key: str) -> str:
        return class_in(self._must_head(key))

    def set_storage_class(self, key: str, storage_class: str) -> None:
        if storage_class not in self.storage_classes:
            raise PermanentError(
                f"{storage_class} is not one of S3's classes Backfleet moves objects to "
                f"({', '.join(self.storage_classes)})"
            )
        head = self._must_head(key)
        current = class_in(head)
        if current == storage_class:
            # Moved already: by a pass that died before recording it, or whose re-lock
            # failed after the copy (then the lock is given back now, or never would be).
            self._relock_after_a_move(key, head)
            return
        if current in self.archive_classes:
            raise PermanentError(
                f"{self._where(key)} is in {current}: S3 copies an archived object only "
                f"once it is restored, so it stays in {current}"
            )
        changes: dict[str, Any] = {
            "Metadata": dict(head.get("Metadata") or {}),  # REPLACE: given again, as it was
            "StorageClass": storage_class,
            **encryption_in(head),
        }
        if head.get("ContentType"):
            changes["ContentType"] = head["ContentType"]
        answer = self._copy_onto_itself(key, head, changes, what=f"into {storage_class}")
        version = str(answer.get("VersionId") or "") or None
        self._keep_lock(key, head, version)
        self._drop_replaced(key, head, version)

    def _keep_lock(self, key: str, head: dict[str, Any], version: str | None) -> None:
        """Give the new version the Object Lock the old one had.

        Not by lock headers on the copy: a CopyObject that carries them is refused by
        S3 implementations that want a Content-MD5 of a body a copy does not have (moto's
        server does), and a bucket's default retention may already give the copy a later
        date, which a PutObjectRetention must not shorten (COMPLIANCE refuses it). The
        old version stays locked meanwhile, so nothing is ever unprotected.
        """
        until = head.get("ObjectLockRetainUntilDate")
        mode = head.get("ObjectLockMode")
        if mode and isinstance(until, datetime) and until > self._clock():
            self._retain(key, version, str(mode), until)
        if head.get("ObjectLockLegalHoldStatus") == "ON":
            client = self._client()
            target = {"VersionId": version} if version else {}
            self._call(
                f"legal hold of {self._where(key)}",
                lambda: client.put_object_legal_hold(
                    Bucket=self.config.bucket, Key=key, LegalHold={"Status": "ON"}, **target
                ),
            )

    def _relock_after_a_move(self, key: str, head: dict[str, Any]) -> None:
        """Give the current version the lock of the newest locked version it replaced, when
        it has none itself: a move whose PutObjectRetention failed after the copy left it
        unlocked (the old version stays locked, but a restore reads the current one)."""
        now = self._clock()
        version = str(head.get("VersionId") or "")
        if lock_in_force(head, now) or not version or version == "null":
            return
        client = self._client()
        listed = self._call(
            f"versions of {self._where(key)}",
            lambda: client.list_object_versions(Bucket=self.config.bucket, Prefix=key),
        )
        older = sorted(
            (v for v in listed.get("Versions", []) if v["Key"] == key and not v["IsLatest"]),
            key=lambda v: v["LastModified"],
            reverse=True,
        )
        for entry in older:
            replaced = self._head_version(key, str(entry["VersionId"]))
            if lock_in_force(replaced, now):
                log.warning("%s: its lock was lost in a move; given back", self._where(key))
                self._keep_lock(key, replaced, version)
                return

    def _head_version(self, key: str, version: str) -> dict[str, Any]:
        client = self._client()
        return dict(
            self._call(
                f"check of {self._where(key)}",
                lambda: client.head_object(Bucket=self.config.bucket, Key=key, VersionId=version),
            )
        )

    def _retain(self, key: str, version: str | None, mode: str, until: datetime) -> None:
        """PutObjectRetention to `until`, unless the version is locked that long already."""
        client = self._client()
        target = {"VersionId": version} if version else {}
        now_held = self._call(
            f"check of {self._where(key)}",
            lambda: client.head_object(Bucket=self.config.bucket, Key=key, **target),
        ).get("ObjectLockRetainUntilDate")
        if isinstance(now_held, datetime) and now_held >= until:
            return
        self._call(
            f"Object Lock retention of {self._where(key)} until {until.isoformat()}",
            lambda: client.put_object_retention(
                Bucket=self.config.bucket,
                Key=key,
                Retention={"Mode": mode, "RetainUntilDate": until},
                **target,
            ),
        )

    def _drop_replaced(self, key: str, head: dict[str, Any], version: str | None) -> None:
        """Delete the version the copy replaced, unless it is locked (then it stays until a
        lifecycle rule expires it); a failure leaves it, with a warning."""
        old = str(head.get("VersionId") or "")
        if not old or old == "null" or not version or old == version:
            return  # an unversioned bucket: the copy replaced the object
        if lock_in_force(head, self._clock()):
            log.info(
                "%s: the %s version it replaced is locked and stays until its retention ends "
                "(a NoncurrentVersionExpiration lifecycle rule then removes it)",
                self._where(key),
                class_in(head),
            )
            return
        client = self._client()
        try:
            self._call(
                f"delete of the replaced version of {self._where(key)}",
                lambda: client.delete_object(Bucket=self.config.bucket, Key=key, VersionId=old),
            )
        except BackfleetError as exc:
            log.warning("%s: its replaced version stays: %s", self._where(key), exc)

    def extend_lock(self, key: str, until: datetime) -> None:
        head = self._must_head(key)
        held = head.get("ObjectLockRetainUntilDate")
        if isinstance(held, datetime) and held >= until:
            return  # never shortened
        mode = str(head.get("ObjectLockMode") or self.config.object_lock_mode)
        if not mode:
            return  # nothing says which lock: AWS_S3_OBJECT_LOCK_MODE is not set
        version = str(head.get("VersionId") or "") or None
        self._retain(key, None if version == "null" else version, mode, until)

    def rehydrate(self, key: str) -> bool:
        head = self._must_head(key)
        storage_class = class_in(head)
        if storage_class not in self.archive_classes:
            return True
        restore = str(head.get("Restore") or "")
        if RESTORED in restore:
            return True
        if RESTORING in restore:
            return False
        tier = self.config.rehydration_tier
        if storage_class == "DEEP_ARCHIVE" and tier == "Expedited":
            tier = "Standard"  # Deep Archive has no Expedited retrieval
        client = self._client()
        request = {"Days": self.config.rehydration_days, "GlacierJobParameters": {"Tier": tier}}
        try:
            self._call(
                f"restore of {self._where(key)} from {storage_class} ({tier})",
                lambda: client.restore_object(
                    Bucket=self.config.bucket, Key=key, RestoreRequest=request
                ),
            )
        except PermanentError as exc:
            if "RestoreAlreadyInProgress" in str(exc):
                return False
            raise
        log.info("%s: asked S3 to restore it from %s (%s)", self._where(key), storage_class, tier)
        return RESTORED in str(self._must_head(key).get("Restore") or "")

    def stored_facts(self, key: str) -> StoredFacts:
        head = self._must_head(key)
        client = self._client()
        checksums: dict[str, str] = {}
        try:
            attributes = self._call(
                f"attributes of {self._where(key)}",
                lambda: client.get_object_attributes(
                    Bucket=self.config.bucket,
                    Key=key,
                    ObjectAttributes=["Checksum", "ObjectParts"],
                ),
            )
            checksums = full_object_checksums(dict(attributes))
        except ConfigError:
            raise  # credentials, permissions: the operator must hear of it
        except PermanentError as exc:  # a server without GetObjectAttributes: no checksums
            log.debug("%s: no GetObjectAttributes (%s)", self._where(key), exc)
        return StoredFacts(
            size=int(head.get("ContentLength", 0)),
            storage_class=class_in(head),
            sha256=sha256_in(head),
            checksums=checksums,
        )

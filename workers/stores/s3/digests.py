"""Each object's SHA-256 in its S3 user metadata, `x-amz-meta-sha256`, so that
`aws s3api head-object` checks an object without Backfleet.

A PutObject (manifests, audit objects) carries it from the start. A multipart upload
cannot: S3 takes user metadata only at CreateMultipartUpload, before any byte is
known, and no checksum S3 keeps of a multipart object is the SHA-256 of the whole
object (a multipart SHA-256 checksum is COMPOSITE, a hash of the parts' hashes; only
the CRCs have a FULL_OBJECT type). So once the upload is complete, the object is copied
onto itself with its metadata replaced (AWS_S3_SHA256_METADATA, on by default): one
CopyObject up to 5 GiB, UploadPartCopy ranges beyond (S3's limit for one copy). The
copy happens inside S3, no byte passes through the worker, and it is guarded by the
ETag of the object just completed. Its costs (docs/concepts/storage.md, "The SHA-256 in
each object's metadata"): one COPY request, S3's time to rewrite the object, and on a
versioned bucket (Object Lock's always are) the version it replaces, kept until a
lifecycle rule expires it, and under Object Lock not before its retention ends.

A copy that fails leaves the object as it was, complete and right, without the
metadata: logged as a warning, never a failed backup (the manifest holds the SHA-256).
"""

import logging
import math
from functools import partial
from typing import Any, ClassVar

from workers.errors import BackfleetError, NotFoundError, PermanentError
from workers.stores.base import SHA256_METADATA, check_key
from workers.stores.s3.connection import S3Connection
from workers.stores.s3.write_params import FLEXIBLE_CHECKSUMS, checksum_algorithm, object_params

log = logging.getLogger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB


def sha256_in(head: dict[str, Any]) -> str | None:
    """The SHA-256 a HeadObject's user metadata records (names in any case)."""
    for name, value in (head.get("Metadata") or {}).items():
        if str(name).lower() == SHA256_METADATA:
            return str(value)
    return None


class S3Digests(S3Connection):
    """Reading and (after a multipart upload) setting `x-amz-meta-sha256`."""

    max_copy_size: ClassVar[int] = 5 * GiB  # one CopyObject; beyond it, UploadPartCopy
    copy_part_size: ClassVar[int] = 512 * MiB  # grown to fit 10,000 parts
    max_copy_parts: ClassVar[int] = 10_000

    def stored_sha256(self, key: str) -> str | None:
        head = self._head(check_key(key))
        if head is None:
            raise NotFoundError(f"object {self._where(key)} does not exist")
        return sha256_in(head)

    def _stamp_sha256(self, key: str, sha256: str) -> None:
        """Give a completed multipart object its `x-amz-meta-sha256` by copying it onto
        itself; a failure is logged and leaves the object as it is."""
        if not self.config.sha256_metadata:
            return
        try:
            self._copy_with_sha256(key, sha256)
        except Exception as exc:
            # Our errors are redacted; another's text might quote the endpoint: its type only.
            reason = str(exc) if isinstance(exc, BackfleetError) else type(exc).__name__
            log.warning(
                "%s is stored, but without its x-amz-meta-sha256 (the copy that sets it "
                "failed: %s); its SHA-256 is in the manifest",
                self._where(key),
                reason,
            )

    def _copy_with_sha256(self, key: str, sha256: str) -> None:
        head = self._head(key)
        if head is None:
            raise PermanentError(f"{self._where(key)} is gone right after its upload")
        if sha256_in(head) == sha256:
            return  # a completion retried after the copy went through
        changes: dict[str, Any] = {
            "Metadata": {SHA256_METADATA: sha256},
            **object_params(self.config, self._clock),  # a copy does not keep SSE or a lock
        }
        self._copy_onto_itself(key, head, changes, what="with its SHA-256")

    def _copy_onto_itself(
        self, key: str, head: dict[str, Any], changes: dict[str, Any], *, what: str
    ) -> dict[str, Any]:
        """Copy the object `head` describes onto itself inside S3, as a new object (a new
        version on a versioned bucket) that carries `changes` (Metadata, which replaces
        the old; encryption, a lock, a StorageClass): one CopyObject up to 5 GiB,
        UploadPartCopy ranges beyond. Guarded by the ETag of `head`: if the object changed
        since, nothing is copied (PermanentError). With a CRC32, CRC32C or SHA256
        AWS_S3_CHECKSUM_ALGORITHM, S3 computes that checksum over the whole copy (one
        CopyObject only). Returns the answer of the request that made the new object
        (its VersionId, where the bucket keeps versions)."""
        size = int(head.get("ContentLength", 0))
        params: dict[str, Any] = {"Bucket": self.config.bucket, "Key": key, **changes}
        source = {"Bucket": self.config.bucket, "Key": key}
        etag = str(head.get("ETag", ""))
        guard = {"CopySourceIfMatch": etag} if etag else {}  # the object we looked at
        if size <= self.max_copy_size:
            checksum = checksum_algorithm(self.config)
            if checksum in FLEXIBLE_CHECKSUMS:  # S3 computes it over the whole copy
                params["ChecksumAlgorithm"] = checksum
            client = self._client()
            answer = self._call(
                f"copy of {self._where(key)} onto itself {what}",
                lambda: client.copy_object(
                    CopySource=source, MetadataDirective="REPLACE", **guard, **params
                ),
            )
            return dict(answer)
        return self._copy_in_parts(key, size, source, guard, params, what=what)

    def _copy_in_parts(
        self,
        key: str,
        size: int,
        source: dict[str, str],
        guard: dict[str, str],
        params: dict[str, Any],
        *,
        what: str,
    ) -> dict[str, Any]:
        """The copy of an object over 5 GiB: a multipart upload of UploadPartCopy ranges."""
        client = self._client()
        what = f"copy of {self._where(key)} onto itself {what}"
        created = self._call(what, lambda: client.create_multipart_upload(**params))
        upload_id = str(created["UploadId"])
        step = max(self.copy_part_size, math.ceil(size / self.max_copy_parts))
        try:
            parts = []
            for number, start in enumerate(range(0, size, step), start=1):
                last = min(start + step, size) - 1
                copy_range = partial(
                    client.upload_part_copy,
                    Bucket=self.config.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={start}-{last}",
                    **guard,
                )
                done = self._call(f"{what}, part {number}", copy_range)
                parts.append({"PartNumber": number, "ETag": done["CopyPartResult"]["ETag"]})
            answer = self._call(
                what,
                lambda: client.complete_multipart_upload(
                    Bucket=self.config.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
            return dict(answer)
        except BaseException:
            try:
                self._call(
                    f"abort of the {what}",
                    lambda: client.abort_multipart_upload(
                        Bucket=self.config.bucket, Key=key, UploadId=upload_id
                    ),
                )
            except BackfleetError:  # the stale-upload sweep will
                log.warning("could not abort the %s", what)
            raise

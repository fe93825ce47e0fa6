"""S3 multipart uploads: create, send parts, complete, abort, resume, list the unfinished.

Completing lists the server's parts and checks them against the recorded ones, so a
resumed upload never completes with bytes it did not send; a complete retried after a
lost answer finds the object already there and succeeds. Then the object gets its
SHA-256 in its user metadata (digests.py).
"""

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar

from workers.errors import NotFoundError, PermanentError
from workers.stores.base import PendingUpload, UploadedPart, check_key
from workers.stores.s3.digests import S3Digests
from workers.stores.s3.write_params import (
    CHECKSUM_FIELDS,
    FLEXIBLE_CHECKSUMS,
    checksum_algorithm,
    integrity_params,
    object_params,
)


def _etag(value: str) -> str:
    return value.strip().strip('"')


def part_mismatches(parts: Sequence[UploadedPart], listed: dict[int, dict[str, Any]]) -> list[str]:
    """How the server's parts differ from the recorded ones (extra server parts are fine)."""
    problems = []
    for part in parts:
        held = listed.get(part.number)
        if held is None:
            problems.append(f"part {part.number} is missing")
        elif int(held.get("Size", -1)) != part.size:
            problems.append(f"part {part.number} holds {held.get('Size')} bytes, not {part.size}")
        elif part.etag and _etag(str(held.get("ETag", ""))) != _etag(part.etag):
            problems.append(f"part {part.number} has another ETag")
    return problems


class S3Multipart(S3Digests):
    """The multipart half of S3Store (store.py declares the limits these methods enforce)."""

    max_parts: ClassVar[int]
    max_part_size: ClassVar[int]

    def create_upload(self, key: str) -> str:
        check_key(key)
        params = {
            "Bucket": self.config.bucket,
            "Key": key,
            **object_params(self.config, self._clock),
        }
        checksum = checksum_algorithm(self.config)
        if checksum in FLEXIBLE_CHECKSUMS:
            params["ChecksumAlgorithm"] = checksum  # S3 then expects it on every part
        client = self._client()
        done = self._call(
            f"start of upload to {self._where(key)}",
            lambda: client.create_multipart_upload(**params),
        )
        return str(done["UploadId"])

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> UploadedPart:
        if not 1 <= number <= self.max_parts:
            raise PermanentError(f"part number {number} is outside 1..{self.max_parts}")
        if len(data) > self.max_part_size:
            raise PermanentError(f"part {number} of {key} is larger than S3 allows")
        client = self._client()
        params = {
            "Bucket": self.config.bucket,
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": number,
            "Body": data,
            **integrity_params(checksum_algorithm(self.config), data),
        }
        # Not retried here: the pipeline retries each part with workers.retry.
        done = self._once(
            f"upload of part {number} of {self._where(key)}", lambda: client.upload_part(**params)
        )
        return UploadedPart(number=number, size=len(data), etag=str(done["ETag"]))

    def _list_parts(self, key: str, upload_id: str) -> dict[int, dict[str, Any]] | None:
        """The server's parts by number; None when the upload is gone."""
        client = self._client()
        found: dict[int, dict[str, Any]] = {}
        marker = 0
        while True:
            page_of = partial(
                client.list_parts,
                Bucket=self.config.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumberMarker=marker,
            )
            try:
                page = self._call(f"list of the parts of {self._where(key)}", page_of)
            except NotFoundError:
                return None
            for part in page.get("Parts", []):
                found[int(part["PartNumber"])] = part
            if not page.get("IsTruncated"):
                return found
            marker = int(page["NextPartNumberMarker"])

    def complete_upload(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        *,
        sha256: str | None = None,
    ) -> None:
        self._complete(key, upload_id, parts)
        if sha256:
            self._stamp_sha256(key, sha256)

    def _complete(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> None:
        ordered = sorted(parts, key=lambda part: part.number)
        numbers = [part.number for part in ordered]
        if not ordered or len(set(numbers)) != len(numbers):
            raise PermanentError(f"upload of {key}: parts must be distinct and at least one")
        total = sum(part.size for part in ordered)
        listed = self._list_parts(key, upload_id)
        if listed is None:
            if self._holds(key, total):  # our complete already went through
                return
            raise PermanentError(f"upload of {self._where(key)} no longer exists")
        if problems := part_mismatches(ordered, listed):
            raise PermanentError(f"upload of {self._where(key)}: {'; '.join(problems)}")
        manifest = []
        for part in ordered:
            held = listed[part.number]
            entry = {"PartNumber": part.number, "ETag": held["ETag"]}
            entry.update({name: held[name] for name in CHECKSUM_FIELDS if held.get(name)})
            manifest.append(entry)
        client = self._client()
        try:
            self._call(
                f"completion of {self._where(key)}",
                lambda: client.complete_multipart_upload(
                    Bucket=self.config.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": manifest},
                ),
            )
        except NotFoundError:
            # A retry after a lost answer finds the upload completed: not an error.
            if not self._holds(key, total):
                raise

    def abort_upload(self, key: str, upload_id: str) -> None:
        client = self._client()
        with contextlib.suppress(NotFoundError):  # already gone
            self._call(
                f"abort of the upload to {self._where(key)}",
                lambda: client.abort_multipart_upload(
                    Bucket=self.config.bucket, Key=key, UploadId=upload_id
                ),
            )

    def resume_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> bool:
        # Parts the server holds beyond these (in flight when a worker died) do no harm:
        # the next ones overwrite their numbers and complete lists the parts it keeps.
        listed = self._list_parts(key, upload_id)
        return listed is not None and not part_mismatches(parts, listed)

    def list_uploads(self, prefix: str) -> Iterator[PendingUpload]:
        client = self._client()
        markers: dict[str, str] = {}
        while True:
            page_of = partial(
                client.list_multipart_uploads, Bucket=self.config.bucket, Prefix=prefix, **markers
            )
            try:
                page = self._call(f"list of the uploads under {self._where(prefix)}", page_of)
            except NotFoundError:
                return  # rclone's answer for a bucket that never had an upload
            for upload in page.get("Uploads", []):
                started = upload.get("Initiated")
                yield PendingUpload(
                    key=str(upload["Key"]),
                    upload_id=str(upload["UploadId"]),
                    started=started.astimezone(UTC) if isinstance(started, datetime) else None,
                )
            if not page.get("IsTruncated"):
                return
            markers = {
                "KeyMarker": str(page.get("NextKeyMarker", "")),
                "UploadIdMarker": str(page.get("NextUploadIdMarker", "")),
            }

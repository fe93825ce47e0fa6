"""Multipart uploads as staged blocks: create, stage parts, commit, abort, resume, list.

An upload is a set of uncommitted blocks: create_upload only mints an id, each part
is a staged block (block_ids.py names it), and complete commits the block list in
part order, which makes the blob appear all at once. The commit also sets the blob's
metadata, so the whole object's SHA-256 (known by then) goes with it, at no cost.

Abort: Azure cannot delete uncommitted blocks directly. When the blob has no
committed version, abort commits an empty block list (which discards every
uncommitted block) and deletes the empty blob it made. When a committed version
exists, it is left alone and Azure garbage-collects the uncommitted blocks after
seven days. list_uploads only reports blobs without a committed version, and only
uploads that staged at least one block (nothing exists server-side before).
"""

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import ClassVar

from azure.core import MatchConditions
from azure.storage.blob import BlobBlock

from workers.errors import NotFoundError, PermanentError
from workers.stores.azure_blob.block_ids import (
    block_id,
    block_mismatches,
    parse_block_id,
    wanted_blocks,
)
from workers.stores.azure_blob.connection import AzureConnection
from workers.stores.base import SHA256_METADATA, PendingUpload, UploadedPart, check_key


class AzureMultipart(AzureConnection):
    """The upload half of AzureBlobStore (store.py declares the limits these enforce)."""

    max_parts: ClassVar[int]
    max_part_size: ClassVar[int]

    def create_upload(self, key: str) -> str:
        check_key(key)
        return uuid.uuid4().hex  # nothing exists server-side until the first block

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> UploadedPart:
        if not 1 <= number <= self.max_parts:
            raise PermanentError(f"part number {number} is outside 1..{self.max_parts}")
        if len(data) > self.max_part_size:
            raise PermanentError(f"part {number} of {key} is larger than a block may be")
        if not parse_block_id(block_id(upload_id, 1)):
            raise PermanentError("upload id is not one this store issued")
        name = block_id(upload_id, number)
        if not data:  # an empty artifact's one part: nothing to stage, nothing to commit
            return UploadedPart(number=number, size=0, etag=name)
        blob = self._blob(key)
        payload = bytes(data)  # the SDK's MD5 takes bytes only (a buffer is copied)
        # Not retried here: the pipeline retries each part. MD5 lets Azure refuse bad bytes.
        self._once(
            f"upload of part {number} of {self._where(key)}",
            lambda: blob.stage_block(name, payload, length=len(payload), validate_content=True),
        )
        return UploadedPart(number=number, size=len(data), etag=name)

    def complete_upload(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        *,
        sha256: str | None = None,
    ) -> None:
        ordered = sorted(parts, key=lambda part: part.number)
        numbers = [part.number for part in ordered]
        if len(set(numbers)) != len(numbers):
            raise PermanentError(f"upload of {key}: part numbers must be distinct")
        committed, staged = self._blocks(key) or ([], {})
        if problems := block_mismatches(upload_id, ordered, staged):
            if committed == wanted_blocks(upload_id, ordered):
                return  # a retried complete: the first one went through
            raise PermanentError(f"upload of {self._where(key)}: {'; '.join(problems)}")
        blocks = [BlobBlock(block_id=name) for name, _ in wanted_blocks(upload_id, ordered)]
        blob = self._blob(key)
        metadata = {SHA256_METADATA: sha256} if sha256 else None
        self._call(
            f"completion of {self._where(key)}",
            lambda: blob.commit_block_list(blocks, metadata=metadata),
        )

    def abort_upload(self, key: str, upload_id: str) -> None:
        staged = self._uncommitted(key)
        if not staged or not any(name.startswith(f"{upload_id}-") for name in staged):
            return  # nothing of this upload is left
        blob = self._blob(key)
        what = f"abort of the upload to {self._where(key)}"
        try:
            # Committing an empty list discards every uncommitted block; If-None-Match: *
            # makes sure no committed version is overwritten.
            made = self._call(
                what, lambda: blob.commit_block_list([], match_condition=MatchConditions.IfMissing)
            )
        except PermanentError:
            if self._committed(key):
                return  # a real blob: leave it; Azure drops the stale blocks in 7 days
            # Azurite answers 412 for a blob that only has uncommitted blocks.
            made = self._call(what, lambda: blob.commit_block_list([]))
        with contextlib.suppress(NotFoundError, PermanentError):  # someone wrote it meanwhile
            self._call(
                what,
                lambda: blob.delete_blob(
                    etag=str(made["etag"]), match_condition=MatchConditions.IfNotModified
                ),
            )

    def resume_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> bool:
        # Extra staged blocks (parts in flight when a worker died) are harmless: the commit
        # names its blocks and Azure discards the others.
        # Only empty parts: nothing was staged, so nothing can have been lost either.
        staged = self._uncommitted(key) if any(part.size for part in parts) else {}
        return staged is not None and not block_mismatches(upload_id, parts, staged)

    def list_uploads(self, prefix: str) -> Iterator[PendingUpload]:
        container = self._container()
        committed = (info.key for info in self._objects(prefix))
        next_committed = next(committed, None)
        for item in self._pages(
            f"list of the uploads under {self._where(prefix)}",
            lambda token: container.list_blobs(
                name_starts_with=prefix, include=["uncommittedblobs"]
            ).by_page(continuation_token=token),
        ):
            name = str(item.name)
            # Both listings are in name order: walk them together.
            while next_committed is not None and next_committed < name:
                next_committed = next(committed, None)
            if next_committed == name:
                continue  # a committed blob: its stale blocks are Azure's to collect
            started = getattr(item, "last_modified", None) or getattr(item, "creation_time", None)
            blocks = self._uncommitted(name) or {}
            uploads = {parsed[0] for block in blocks if (parsed := parse_block_id(block))}
            for upload_id in sorted(uploads):
                yield PendingUpload(
                    key=name,
                    upload_id=upload_id,
                    started=started.astimezone(UTC) if isinstance(started, datetime) else None,
                )

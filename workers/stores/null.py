"""A store that keeps nothing: `backfleet backup --dry-run` measures the pipeline with it."""

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import BinaryIO, ClassVar

from workers.errors import NotFoundError
from workers.stores.base import (
    ObjectInfo,
    PendingUpload,
    SingleClass,
    StoredFacts,
    UploadedPart,
)


class NullStore(SingleClass):
    kind: ClassVar[str] = "null"
    max_parts: ClassVar[int] = 10_000
    min_part_size: ClassVar[int] = 1
    max_part_size: ClassVar[int] = 5 * 1024**3
    parallel_parts: ClassVar[bool] = True
    object_lock: ClassVar[bool] = False
    default_storage_class: ClassVar[str] = "null"

    def create_upload(self, key: str) -> str:
        return uuid.uuid4().hex

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> UploadedPart:
        return UploadedPart(number=number, size=len(data), etag="")

    def complete_upload(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        *,
        sha256: str | None = None,
    ) -> None:
        return None

    def abort_upload(self, key: str, upload_id: str) -> None:
        return None

    def resume_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> bool:
        return False

    def list_uploads(self, prefix: str) -> Iterator[PendingUpload]:
        return iter(())

    def put_object(self, key: str, data: bytes) -> None:
        return None

    def open_read(self, key: str) -> BinaryIO:
        raise NotFoundError(f"{key}: the null store keeps nothing")

    def exists(self, key: str) -> bool:
        return False

    def stored_sha256(self, key: str) -> str | None:
        raise NotFoundError(f"{key}: the null store keeps nothing")

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return iter(())

    def delete(self, key: str) -> None:
        return None

    def url_for(self, namespace: str, timestamp: str) -> str:
        return f"null://{namespace}/{timestamp}/"

    def check(self) -> None:
        return None

    def locked_until(self, key: str) -> datetime | None:
        return None  # object_lock is False: nothing here is ever locked

    def storage_class_of(self, key: str) -> str:
        raise NotFoundError(f"{key}: the null store keeps nothing")

    def stored_facts(self, key: str) -> StoredFacts:
        raise NotFoundError(f"{key}: the null store keeps nothing")

    def init(self) -> None:
        return None

    def warm_up(self) -> None:
        return None

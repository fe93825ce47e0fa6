"""An in-memory store for fast unit tests of the pipeline (never the only test of a feature)."""

import hashlib
import io
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import BinaryIO, ClassVar

from workers.errors import NotFoundError, PermanentError
from workers.stores.base import (
    ObjectInfo,
    PendingUpload,
    SingleClass,
    StoredFacts,
    UploadedPart,
    check_key,
)


class MemoryStore(SingleClass):
    kind: ClassVar[str] = "memory"
    max_parts: ClassVar[int] = 10_000
    min_part_size: ClassVar[int] = 1
    max_part_size: ClassVar[int] = 5 * 1024**3
    parallel_parts: ClassVar[bool] = True
    object_lock: ClassVar[bool] = False
    default_storage_class: ClassVar[str] = "memory"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.sha256s: dict[str, str] = {}  # the metadata each object carries
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.upload_keys: dict[str, str] = {}

    def create_upload(self, key: str) -> str:
        check_key(key)
        upload_id = uuid.uuid4().hex
        self.uploads[upload_id] = {}
        self.upload_keys[upload_id] = key
        return upload_id

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> UploadedPart:
        self.uploads[upload_id][number] = bytes(data)
        return UploadedPart(number=number, size=len(data), etag=str(number))

    def complete_upload(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        *,
        sha256: str | None = None,
    ) -> None:
        stored = self.uploads.pop(upload_id)
        self.upload_keys.pop(upload_id, None)
        if sorted(stored) != [part.number for part in parts]:
            raise PermanentError(f"upload of {key} is missing parts")
        self.objects[key] = b"".join(stored[part.number] for part in parts)
        self._set_sha256(key, sha256)

    def _set_sha256(self, key: str, sha256: str | None) -> None:
        if sha256:
            self.sha256s[key] = sha256
        else:
            self.sha256s.pop(key, None)

    def abort_upload(self, key: str, upload_id: str) -> None:
        self.uploads.pop(upload_id, None)
        self.upload_keys.pop(upload_id, None)

    def resume_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> bool:
        stored = self.uploads.get(upload_id)
        if stored is None or any(stored.get(p.number) is None for p in parts):
            return False
        for number in set(stored) - {part.number for part in parts}:
            del stored[number]
        return True

    def list_uploads(self, prefix: str) -> Iterator[PendingUpload]:
        for upload_id, key in sorted(self.upload_keys.items()):
            if key.startswith(prefix) and upload_id in self.uploads:
                yield PendingUpload(key=key, upload_id=upload_id)

    def put_object(self, key: str, data: bytes) -> None:
        self.objects[check_key(key)] = bytes(data)
        self._set_sha256(key, hashlib.sha256(data).hexdigest())

    def stored_sha256(self, key: str) -> str | None:
        if key not in self.objects:
            raise NotFoundError(f"object {key} is not in the store")
        return self.sha256s.get(key)

    def open_read(self, key: str) -> BinaryIO:
        try:
            return io.BytesIO(self.objects[key])
        except KeyError:
            raise NotFoundError(f"object {key} is not in the store") from None

    def exists(self, key: str) -> bool:
        return key in self.objects

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for key in sorted(self.objects):
            if key.startswith(prefix):
                yield ObjectInfo(key=key, size=len(self.objects[key]))

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)
        self.sha256s.pop(key, None)

    def url_for(self, namespace: str, timestamp: str) -> str:
        return f"memory://{namespace}/{timestamp}/"

    def check(self) -> None:
        return None

    def locked_until(self, key: str) -> datetime | None:
        return None  # object_lock is False: nothing here is ever locked

    def storage_class_of(self, key: str) -> str:
        if key not in self.objects:
            raise NotFoundError(f"object {key} is not in the store")
        return self.default_storage_class

    def stored_facts(self, key: str) -> StoredFacts:
        sha256 = self.stored_sha256(key)  # NotFoundError if it is not there
        return StoredFacts(len(self.objects[key]), self.default_storage_class, sha256, {})

    def init(self) -> None:
        return None

    def warm_up(self) -> None:
        return None

"""The local store: a directory, typically a PersistentVolume mount.

Uploads are written under a hidden folder on the same file system, fsynced,
and renamed into place, so a reader never sees a half-written object.
"""

import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, ClassVar

from workers.errors import ConfigError, NotFoundError, PermanentError
from workers.stores.base import ObjectInfo, PendingUpload, UploadedPart, check_key

UPLOADS_DIR = ".backfleet-uploads"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_empty(folder: Path) -> bool:
    # scandir stops at the first name; iterdir would list a namespace's every backup.
    with os.scandir(folder) as names:
        return next(names, None) is None


class LocalStore:
    kind: ClassVar[str] = "local"
    max_parts: ClassVar[int] = 1_000_000
    min_part_size: ClassVar[int] = 1
    max_part_size: ClassVar[int] = 5 * 1024**3
    parallel_parts: ClassVar[bool] = False  # parts are appended in order

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    # --- paths ---
    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _upload_path(self, upload_id: str, suffix: str = ".part") -> Path:
        if not upload_id.isalnum():
            raise PermanentError("upload id is not one this store issued")
        return self.root / UPLOADS_DIR / f"{upload_id}{suffix}"

    # --- multipart uploads: parts are appended in order ---
    def create_upload(self, key: str) -> str:
        check_key(key)
        upload_id = uuid.uuid4().hex
        path = self._upload_path(upload_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._upload_path(upload_id, ".key").write_text(key)  # for list_uploads
        path.touch(exist_ok=False)
        return upload_id

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> UploadedPart:
        with open(self._upload_path(upload_id), "ab") as handle:
            offset = handle.tell()
            handle.write(data)
        return UploadedPart(number=number, size=len(data), etag=str(offset))

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> None:
        source = self._upload_path(upload_id)
        expected = sum(part.size for part in parts)
        with open(source, "rb+") as handle:
            actual = os.fstat(handle.fileno()).st_size
            if actual != expected:
                raise PermanentError(
                    f"upload of {key} holds {actual} bytes but its parts add up to {expected}"
                )
            os.fsync(handle.fileno())
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        _fsync_dir(target.parent)
        self._upload_path(upload_id, ".key").unlink(missing_ok=True)

    def abort_upload(self, key: str, upload_id: str) -> None:
        self._upload_path(upload_id).unlink(missing_ok=True)
        self._upload_path(upload_id, ".key").unlink(missing_ok=True)

    def resume_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> bool:
        path = self._upload_path(upload_id)
        recorded = sum(part.size for part in parts)
        try:
            with open(path, "rb+") as handle:
                if os.fstat(handle.fileno()).st_size < recorded:
                    return False
                handle.truncate(recorded)  # drop a part that was being written when we died
        except FileNotFoundError:
            return False
        return True

    def list_uploads(self, prefix: str) -> Iterator[PendingUpload]:
        folder = self.root / UPLOADS_DIR
        if not folder.is_dir():
            return
        for marker in sorted(folder.glob("*.key")):
            key = marker.read_text()
            if key.startswith(prefix):
                started = datetime.fromtimestamp(marker.stat().st_mtime, UTC)
                yield PendingUpload(key=key, upload_id=marker.stem, started=started)

    # --- whole objects ---
    def put_object(self, key: str, data: bytes) -> None:
        upload_id = self.create_upload(key)
        try:
            part = self.upload_part(key, upload_id, 1, data)
            self.complete_upload(key, upload_id, [part])
        except BaseException:
            self.abort_upload(key, upload_id)
            raise

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"object {key} is not in the local store") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the folder the prefix names (`ns/ts/`), not the whole store:
        # retention lists one backup at a time.
        folder = prefix.rpartition("/")[0]
        start = self._path(folder) if folder else self.root
        if not start.is_dir():
            return
        found: list[ObjectInfo] = []
        for directory, subdirs, files in os.walk(start):
            subdirs[:] = [name for name in subdirs if name != UPLOADS_DIR]
            for name in files:
                path = Path(directory) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    stat = path.stat()
                    modified = datetime.fromtimestamp(stat.st_mtime, UTC)
                    found.append(ObjectInfo(key=key, size=stat.st_size, modified=modified))
        yield from sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Drop folders the deletion emptied, up to the root.
        parent = path.parent
        while parent != self.root and parent.is_dir() and _is_empty(parent):
            parent.rmdir()
            parent = parent.parent

    def url_for(self, namespace: str, timestamp: str) -> str:
        return f"file://{self.root}/{namespace}/{timestamp}/"

    def check(self) -> None:
        if not self.root.is_dir():
            raise ConfigError(
                f"local store directory {self.root} does not exist "
                "(OBJECT_STORE_LOCATION_LOCAL; `backfleet store init` creates it)"
            )
        if not os.access(self.root, os.W_OK):
            raise ConfigError(f"local store directory {self.root} is not writable")

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def remove_all_uploads(self) -> None:
        """Tests and `store init --reset` only: forget every unfinished upload."""
        shutil.rmtree(self.root / UPLOADS_DIR, ignore_errors=True)

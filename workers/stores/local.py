"""The local store: a directory, typically a PersistentVolume mount.

Uploads are written under a hidden folder on the same file system, fsynced,
and renamed into place, so a reader never sees a half-written object.

Files get OBJECT_STORE_LOCAL_FILE_MODE (0600 by default) and the folders this
store creates the matching directory mode (0700), set explicitly so the
process's umask cannot widen them: backups are readable by the fleet's user only.

Each object carries its SHA-256 in the extended attribute `user.sha256`
(`getfattr -n user.sha256 FILE`), set before it is renamed into place. A
filesystem that keeps no user extended attributes (some network and overlay
filesystems, tmpfs before Linux 6.6) gets none: the object is stored all the
same, and said once in the log.
"""

import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, ClassVar

from workers.errors import ConfigError, NotFoundError, PermanentError
from workers.settings import Settings
from workers.stores.base import (
    SHA256_METADATA,
    ObjectInfo,
    PendingUpload,
    SingleClass,
    StoredFacts,
    UploadedPart,
    check_key,
)

log = logging.getLogger(__name__)

UPLOADS_DIR = ".backfleet-uploads"
DEFAULT_FILE_MODE = 0o600
SHA256_XATTR = f"user.{SHA256_METADATA}"


def directory_mode(file_mode: int) -> int:
    """The folder mode matching a file mode: x wherever r is (0600 -> 0700, 0640 -> 0750)."""
    return file_mode | ((file_mode & 0o444) >> 2)


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


class LocalStore(SingleClass):
    kind: ClassVar[str] = "local"
    max_parts: ClassVar[int] = 1_000_000
    min_part_size: ClassVar[int] = 1
    max_part_size: ClassVar[int] = 5 * 1024**3
    parallel_parts: ClassVar[bool] = False  # parts are appended in order
    object_lock: ClassVar[bool] = False
    default_storage_class: ClassVar[str] = "local"
    settings_fields: ClassVar[tuple[str, ...]] = (
        "object_store_location_local",
        "object_store_local_file_mode",
    )
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, root: Path, *, file_mode: int = DEFAULT_FILE_MODE) -> None:
        self.root = root.absolute()
        self.file_mode = file_mode
        self.dir_mode = directory_mode(file_mode)
        self._xattrs_refused = False  # said once: the filesystem keeps no user xattrs

    def _make_dirs(self, folder: Path) -> None:
        """Create `folder` and its missing parents with the store's folder mode."""
        missing: list[Path] = []
        while not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            try:
                path.mkdir(mode=self.dir_mode)
            except FileExistsError:  # another worker made it first
                continue
            os.chmod(path, self.dir_mode)  # mkdir's mode passes through the umask

    def _create(self, path: Path, data: bytes = b"") -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self.file_mode)
        try:
            os.fchmod(fd, self.file_mode)  # open's mode passes through the umask
            if data:
                os.write(fd, data)
        finally:
            os.close(fd)

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
        self._make_dirs(path.parent)
        self._create(self._upload_path(upload_id, ".key"), key.encode())  # for list_uploads
        self._create(path)
        return upload_id

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> UploadedPart:
        # Never O_CREAT: an upload removed meanwhile (aborted as stale, a reset) must fail,
        # not come back as a new file with the umask's mode holding only the later parts.
        try:
            fd = os.open(self._upload_path(upload_id), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:
            raise PermanentError(f"the upload of {key} no longer exists") from None
        with os.fdopen(fd, "ab") as handle:
            offset = handle.seek(0, os.SEEK_END)
            handle.write(data)
        return UploadedPart(number=number, size=len(data), etag=str(offset))

    def complete_upload(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        *,
        sha256: str | None = None,
    ) -> None:
        source = self._upload_path(upload_id)
        expected = sum(part.size for part in parts)
        with open(source, "rb+") as handle:
            actual = os.fstat(handle.fileno()).st_size
            if actual != expected:
                raise PermanentError(
                    f"upload of {key} holds {actual} bytes but its parts add up to {expected}"
                )
            if sha256:
                self._set_sha256(handle.fileno(), sha256)
            os.fsync(handle.fileno())
        target = self._path(key)
        self._make_dirs(target.parent)
        os.replace(source, target)
        _fsync_dir(target.parent)
        self._upload_path(upload_id, ".key").unlink(missing_ok=True)

    def _set_sha256(self, fd: int, sha256: str) -> None:
        try:
            os.setxattr(fd, SHA256_XATTR, sha256.encode("ascii"))
        except OSError as exc:  # ENOTSUP and kin: the object is stored all the same
            if not self._xattrs_refused:
                self._xattrs_refused = True
                log.info(
                    "the local store's filesystem under %s keeps no extended attributes "
                    "(%s): objects are stored without %s",
                    self.root,
                    os.strerror(exc.errno or 0),
                    SHA256_XATTR,
                )

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
            self.complete_upload(key, upload_id, [part], sha256=hashlib.sha256(data).hexdigest())
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

    def stored_sha256(self, key: str) -> str | None:
        path = self._path(key)
        try:
            return os.getxattr(path, SHA256_XATTR).decode("ascii", "replace")
        except FileNotFoundError:
            raise NotFoundError(f"object {key} is not in the local store") from None
        except OSError:  # no such attribute, or a filesystem without any
            if not path.is_file():
                raise NotFoundError(f"object {key} is not in the local store") from None
            return None

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

    @classmethod
    def from_settings(cls, settings: Settings) -> "LocalStore":
        return cls(settings.object_store_location_local, file_mode=settings.local_file_mode)

    def locked_until(self, key: str) -> datetime | None:
        return None  # object_lock is False: nothing here is ever locked

    def storage_class_of(self, key: str) -> str:
        if not self.exists(key):
            raise NotFoundError(f"object {key} is not in the local store")
        return self.default_storage_class

    def stored_facts(self, key: str) -> StoredFacts:
        sha256 = self.stored_sha256(key)  # NotFoundError if it is not there
        size = self._path(key).stat().st_size
        return StoredFacts(size, self.default_storage_class, sha256, {})

    def init(self) -> None:
        self._make_dirs(self.root)

    def warm_up(self) -> None:
        return None  # no SDK, no client

    def remove_all_uploads(self) -> None:
        """Tests and `store init --reset` only: forget every unfinished upload."""
        shutil.rmtree(self.root / UPLOADS_DIR, ignore_errors=True)

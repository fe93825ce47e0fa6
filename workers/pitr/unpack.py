"""A base backup's tar (as pg_basebackup wrote it) unpacked into an empty data folder.

The stream is unpacked as it is read, before its SHA-256 is known: tarfile's `data`
filter refuses any member that would land outside the folder (absolute paths, `..`,
links pointing out) and drops ownership and special mode bits, so a tampered artifact
can at worst fill the folder, which the caller removes when verify() then fails. No
server is started on it before verify() has passed.
"""

import tarfile
from pathlib import Path
from typing import IO, cast

from workers.errors import IntegrityError
from workers.sources.base import CHUNK_SIZE, ReadableStream

# What every base backup holds; without one of them it is not one (or was cut short).
REQUIRED = ("PG_VERSION", "backup_label", "global/pg_control", "backup_manifest")


class _Reader:
    """The restore stream as tarfile's stream mode reads it."""

    def __init__(self, stream: ReadableStream) -> None:
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)


def unpack_base_backup(stream: ReadableStream, data: Path) -> None:
    """Unpack into `data` (made 0700 if missing); IntegrityError if it is not a base backup."""
    data.mkdir(mode=0o700, exist_ok=True)
    try:
        reader = cast(IO[bytes], _Reader(stream))
        with tarfile.open(mode="r|", fileobj=reader, bufsize=CHUNK_SIZE) as tar:
            tar.extractall(data, filter="data")
    except tarfile.TarError as exc:
        raise IntegrityError(f"the base backup is not a readable tar: {exc}") from None
    missing = [name for name in REQUIRED if not (data / name).is_file()]
    if missing:
        raise IntegrityError(f"the base backup lacks {', '.join(missing)}")
    data.chmod(0o700)  # PostgreSQL refuses a data folder others can read


def major_version(data: Path) -> int:
    """The PostgreSQL major version of an unpacked data folder (its PG_VERSION)."""
    text = (data / "PG_VERSION").read_text().strip()
    if not text.isdigit():
        raise IntegrityError(f"the base backup's PG_VERSION is {text[:20]!r}, not a version")
    return int(text)

"""What a base backup is, read from pg_basebackup's tar as it streams past.

Three members say it: `backup_label` (where the backup starts: its WAL location and
timeline), `backup_manifest` (its WAL range: `End-LSN` is the consistent point, the
first moment a restore of it can stop at) and `global/pg_control` (the cluster's
system identifier, its first 8 bytes in the server's byte order: little-endian on
every platform the fleet runs on). Nothing is buffered but these members (of the
manifest, its tail only: the WAL range is at its end), so memory stays bounded
whatever the size of the cluster.
"""

import json
import re
import struct
from typing import Any

from workers.errors import SourceError
from workers.sources.base import ReadableStream

BLOCK = 512
LABEL, MANIFEST, CONTROL = "backup_label", "backup_manifest", "global/pg_control"
# The manifest's tail kept: its "WAL-Ranges" and checksum are a few hundred bytes.
MANIFEST_TAIL = 64 * 1024
_SMALL_LIMIT = 64 * 1024  # backup_label and pg_control are a few hundred bytes, 8 KiB
_LABEL_START = re.compile(r"^START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+)", re.MULTILINE)
_LABEL_TIMELINE = re.compile(r"^START TIMELINE: (\d+)", re.MULTILINE)
_RANGES = re.compile(r'"WAL-Ranges"\s*:\s*(\[.*?\])', re.DOTALL)


class BaseBackupTar:
    """Passes a tar stream through unchanged and keeps the members the facts come from."""

    def __init__(self, raw: ReadableStream) -> None:
        self.raw = raw
        self.members: dict[str, bytes] = {}
        self._header = bytearray()
        self._left = 0  # bytes of the current member still to come, padding included
        self._size_left = 0  # of them, the member's own bytes (not its padding)
        self._name = ""
        self._kept: bytearray | None = None
        self._tail_only = False

    def read(self, size: int = -1, /) -> bytes:
        data = self.raw.read(size)
        if data:
            self._scan(memoryview(data))
        return data

    def _scan(self, data: memoryview) -> None:
        position = 0
        while position < len(data):
            if self._left:
                take = min(self._left, len(data) - position)
                self._keep(data[position : position + min(take, self._size_left)])
                self._size_left = max(0, self._size_left - take)
                self._left -= take
                position += take
                if not self._left:
                    self._end_member()
                continue
            need = BLOCK - len(self._header)
            self._header += data[position : position + need]
            position += min(need, len(data) - position)
            if len(self._header) == BLOCK:
                self._start_member(bytes(self._header))
                self._header.clear()

    def _start_member(self, header: bytes) -> None:
        if not header.strip(b"\0"):
            return  # an end-of-archive block
        name = header[0:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
        if header[257:262] == b"ustar" and prefix:
            name = f"{prefix}/{name}"
        size = _octal_or_binary(header[124:136])
        self._name = name.removeprefix("./")
        self._size_left = size
        self._left = -(-size // BLOCK) * BLOCK
        wanted = self._name in (LABEL, CONTROL) and size <= _SMALL_LIMIT
        self._tail_only = self._name == MANIFEST
        self._kept = bytearray() if wanted or self._tail_only else None
        if not self._left:
            self._end_member()

    def _keep(self, piece: memoryview) -> None:
        if self._kept is None or not piece:
            return
        self._kept += piece
        if self._tail_only and len(self._kept) > MANIFEST_TAIL:
            del self._kept[: len(self._kept) - MANIFEST_TAIL]

    def _end_member(self) -> None:
        if self._kept is not None:
            self.members[self._name] = bytes(self._kept)
        self._kept = None

    def facts(self) -> dict[str, Any]:
        """system_identifier, timeline (of the consistent point), start_timeline,
        start_lsn and end_lsn (the consistent point); SourceError if the tar
        lacks what a restorable base backup has (the stream was cut short)."""
        missing = [name for name in (LABEL, MANIFEST, CONTROL) if name not in self.members]
        if missing or self._left or self._header:
            what = ", ".join(missing) or "the end of its last member"
            raise SourceError(f"pg_basebackup's output is incomplete: {what} missing")
        label = self.members[LABEL].decode("utf-8", "replace")
        start, timeline = _LABEL_START.search(label), _LABEL_TIMELINE.search(label)
        ranges = _RANGES.search(self.members[MANIFEST].decode("utf-8", "replace"))
        control = self.members[CONTROL]
        if start is None or timeline is None or ranges is None or len(control) < 8:
            raise SourceError("pg_basebackup's backup_label or backup_manifest is not as expected")
        wal = json.loads(ranges.group(1))
        return {
            "system_identifier": str(struct.unpack_from("<Q", control)[0]),
            # The consistent point's timeline: the one a replay beyond it follows.
            "timeline": int(wal[-1]["Timeline"]),
            "start_timeline": int(timeline.group(1)),
            "start_lsn": start.group(1),
            "end_lsn": str(wal[-1]["End-LSN"]),
        }


def _octal_or_binary(field: bytes) -> int:
    """A tar size field: octal digits, or base-256 for sizes past 8 GiB."""
    if field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    digits = field.strip(b"\0 ")
    return int(digits, 8) if digits else 0

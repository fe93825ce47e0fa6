"""A source's preamble: a few bytes stored ahead of its data, in a zstd skippable frame.

Some sources carry something small besides their stream (PostgreSQL: the cluster's
roles, which the database dump does not hold). It goes INSIDE the artifact, as the
first frame of its zstd stream, so it is compressed-and-encrypted with the data,
covered by the artifact's size and SHA-256 in the manifest, copied, verified, moved
colder and deleted with it, and the manifest keeps one artifact per service.

zstd decoders skip a skippable frame (the format's own room for metadata, RFC 8878
3.1.2), so `zstd -d` (after `age -d`) still gives exactly the source's stream: a
PostgreSQL artifact stays a plain pg_dump archive. An artifact stored without a
preamble (every one before this frame existed) decodes as it always did.
"""

import struct
from typing import Any

from workers.errors import IntegrityError

# One of the 16 skippable-frame magic numbers (0x184D2A50-0x184D2A5F), little-endian.
MAGIC = 0x184D2A5B
_HEADER = struct.Struct("<II")  # magic, content size
# A preamble is small (a roles list); more is refused both ways rather than held in memory.
MAX_SIZE = 64 * 1024 * 1024


def frame(preamble: bytes) -> bytes:
    """The skippable frame that carries `preamble`."""
    if len(preamble) > MAX_SIZE:
        raise ValueError(f"a preamble is at most {MAX_SIZE} bytes, not {len(preamble)}")
    return _HEADER.pack(MAGIC, len(preamble)) + preamble


def split_preamble(upstream: Any, key: str) -> tuple[bytes | None, Any]:
    """(the preamble or None, a reader of the rest) from the decrypted stored bytes.

    Reads the first frame's header: a preamble frame is consumed; anything else (the
    data's first zstd frame) is handed back in front of the rest.
    """
    head = _read_exactly(upstream, _HEADER.size)
    if len(head) < _HEADER.size or _HEADER.unpack(head)[0] != MAGIC:
        return None, _Prefixed(head, upstream)
    size = _HEADER.unpack(head)[1]
    if size > MAX_SIZE:
        raise IntegrityError(f"{key} announces a preamble of {size} bytes: it is corrupt")
    preamble = _read_exactly(upstream, size)
    if len(preamble) != size:
        raise IntegrityError(f"{key} ends inside its preamble: it is truncated")
    return preamble, upstream


def _read_exactly(stream: Any, size: int) -> bytes:
    pieces, missing = [], size
    while missing > 0:
        piece = stream.read(missing)
        if not piece:
            break
        pieces.append(piece)
        missing -= len(piece)
    return b"".join(pieces)


class _Prefixed:
    """`head`, then the rest of `stream`: what split_preamble read that was not a preamble."""

    def __init__(self, head: bytes, stream: Any) -> None:
        self._head, self._stream = head, stream

    def read(self, size: int = -1, /) -> bytes:
        if not self._head:
            return bytes(self._stream.read(size))
        if size < 0:
            data, self._head = self._head + self._stream.read(size), b""
            return bytes(data)
        data, self._head = self._head[:size], self._head[size:]
        return data

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

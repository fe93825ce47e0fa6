"""The objects of one shipping batch: cutting, compressing, storing, confirming.

Input comes as blocks of complete raw lines of one UTC date, in id order; a raw
line is `<JSON line>\\t<event id>\\n` (the id names the objects, and is taken off
before compression). Each date has one open object, at most MAX_OPEN_DAYS at
once; an object is closed (compressed to its end, stored, read back, its
SHA-256 compared) when the next line would take it past `file_bytes`, when
more dates are open than allowed (the least recently used goes), or at the end
of the batch. Rows come in id order, so an object holds an increasing run of
ids of one date and two objects of a date never overlap: names stay unique.

Every cut depends only on the lines, and the compressor is fed slices of
exactly CHUNK_BYTES: the same batch makes the same objects with the same bytes.
One background thread compresses (ISA-L, which releases the GIL) and uploads
while the caller reads the next rows. Memory: at most MAX_OPEN_DAYS objects'
compressed bytes (each from at most `file_bytes` of lines), PIPELINE_DEPTH
chunks of CHUNK_BYTES in flight, and the caller's block.
"""

import hashlib
import re
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from workers.audit.layout import object_key
from workers.errors import IntegrityError
from workers.stores.base import ObjectStore

if TYPE_CHECKING:
    from isal import isal_zlib

# ISA-L's deflate at level 1: 3.5x zlib level 3 (355 against 100 MB/s on these lines, one
# core) for 6.4x compression instead of 7.7x. Plain gzip: any gunzip reads it.
GZIP_LEVEL = 1
GZIP_WBITS = 31  # a gzip header with no file name and mtime 0
CHUNK_BYTES = 1024 * 1024  # bytes handed to the compressor at a time
PIPELINE_DEPTH = 4  # chunks or objects waiting for the background thread
MAX_OPEN_DAYS = 4  # objects open at once in a batch whose events span several dates
READ_CHUNK = 1024 * 1024
_ID_SUFFIX = re.compile(rb"\t\d+\n")


def first_id(raw: bytes) -> int:
    end = raw.index(b"\n")
    return int(raw[raw.rindex(b"\t", 0, end) + 1 : end])


def last_id(raw: bytes) -> int:
    end = len(raw) - 1
    return int(raw[raw.rindex(b"\t", 0, end) + 1 : end])


def _compressor() -> "isal_zlib.Compress":
    # Imported here: a worker process loads ISA-L only once it ships user events.
    from isal import isal_zlib

    return isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, GZIP_WBITS)


@dataclass
class _Object:
    day: date
    first_id: int = 0
    last_id: int = 0
    raw_bytes: int = 0  # raw lines taken (ids included): at least the bytes it will hold
    buffer: bytearray = field(default_factory=bytearray)  # clean lines not yet compressed
    compressor: "isal_zlib.Compress" = field(default_factory=_compressor)
    compressed: list[bytes] = field(default_factory=list)

    def compress(self, chunk: bytes) -> None:  # on the background thread
        self.compressed.append(self.compressor.compress(chunk))

    def finish(self) -> bytes:  # on the background thread, after every compress
        self.compressed.append(self.compressor.flush())
        data = b"".join(self.compressed)
        self.compressed.clear()
        return data


class _Pipeline:
    """Ordered work on one background thread, with at most `depth` items waiting."""

    def __init__(self, depth: int = PIPELINE_DEPTH) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-ship")
        self.waiting: deque[Future[None]] = deque()
        self.depth = depth

    def submit(self, work: Callable[[], None]) -> None:
        while len(self.waiting) >= self.depth:
            self.waiting.popleft().result()  # raises the background thread's error here
        self.waiting.append(self.executor.submit(work))

    def wait(self) -> None:
        while self.waiting:
            self.waiting.popleft().result()

    def close(self) -> None:
        for pending in self.waiting:
            pending.cancel()
        self.executor.shutdown(wait=True)


class BatchWriter:
    """Writes one batch's objects; use as a context manager, call `add`, then `finish`."""

    def __init__(
        self, store: ObjectStore, namespace: str, *, file_bytes: int, copy_escaped: bool
    ) -> None:
        self.store, self.namespace, self.file_bytes = store, namespace, file_bytes
        self.copy_escaped = copy_escaped  # PostgreSQL's COPY doubled every backslash
        self.pipeline = _Pipeline()
        self.open: dict[date, _Object] = {}  # in order of last use
        self.keys: list[str] = []
        self.events = 0

    def __enter__(self) -> "BatchWriter":
        return self

    def __exit__(self, *_: object) -> None:
        self.pipeline.close()

    def add(self, day: date, raw: bytes) -> None:
        """Take complete raw lines of one date, cutting objects at `file_bytes`."""
        self.events += raw.count(b"\n")
        while raw:
            obj = self._object(day)
            room = self.file_bytes - obj.raw_bytes
            if len(raw) <= room:
                piece, raw = raw, b""
            else:
                cut = raw.rfind(b"\n", 0, room) + 1
                if cut == 0 and obj.raw_bytes:  # not even one more line fits
                    self._close(self.open.pop(day))
                    continue
                cut = cut or raw.index(b"\n") + 1  # one line over the bound goes alone
                piece, raw = raw[:cut], raw[cut:]
            self._take(obj, piece)
            if raw:
                self._close(self.open.pop(day))

    def finish(self) -> list[str]:
        for obj in list(self.open.values()):
            self._close(obj)
        self.open.clear()
        self.pipeline.wait()
        return self.keys

    def _object(self, day: date) -> _Object:
        obj = self.open.pop(day, None)
        if obj is None:
            if len(self.open) >= MAX_OPEN_DAYS:
                self._close(self.open.pop(next(iter(self.open))))
            obj = _Object(day=day)
        self.open[day] = obj  # now the most recently used
        return obj

    def _take(self, obj: _Object, piece: bytes) -> None:
        if not obj.first_id:
            obj.first_id = first_id(piece)
        obj.last_id = last_id(piece)
        obj.raw_bytes += len(piece)
        clean = _ID_SUFFIX.sub(b"\n", piece)
        obj.buffer += clean.replace(b"\\\\", b"\\") if self.copy_escaped else clean
        while len(obj.buffer) >= CHUNK_BYTES:
            self._hand_over(obj, CHUNK_BYTES)

    def _hand_over(self, obj: _Object, size: int) -> None:
        chunk = bytes(obj.buffer[:size])
        del obj.buffer[:size]
        self.pipeline.submit(lambda: obj.compress(chunk))

    def _close(self, obj: _Object) -> None:
        if obj.buffer:
            self._hand_over(obj, len(obj.buffer))
        key = object_key(self.namespace, obj.day, obj.first_id, obj.last_id)
        self.pipeline.submit(lambda: store_confirmed(self.store, key, obj.finish()))
        self.keys.append(key)


def store_confirmed(store: ObjectStore, key: str, data: bytes) -> None:
    """Store `data` at `key`, read it back, and fail unless the SHA-256 matches."""
    expected = hashlib.sha256(data).hexdigest()
    store.put_object(key, data)
    digest = hashlib.sha256()
    with store.open_read(key) as stream:
        while chunk := stream.read(READ_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise IntegrityError(f"{key} reads back with another SHA-256 than was written")

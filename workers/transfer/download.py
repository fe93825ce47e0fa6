"""Stored parts -> SHA-256 -> [age] -> zstd -> source, verified before the source commits.

A restore reads one stream per artifact; a thread decodes it ahead of the source
(READ_AHEAD_CHUNKS chunks at most), and the stream's verify() says whether its
size and SHA-256 matched the manifest: every source commits only after that.
"""

import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from typing import IO, Any

import zstandard

from workers.errors import IntegrityError
from workers.repository.manifest import ArtifactEntry
from workers.sources.base import CHUNK_SIZE, RestoreStream, Source
from workers.sources.channel import ChunkChannel
from workers.stores.base import ObjectStore
from workers.transfer import crypto
from workers.transfer.parts import ProgressCallback
from workers.transfer.preamble import split_preamble

# Decoded chunks a restore holds ready for its source (each at most CHUNK_SIZE).
READ_AHEAD_CHUNKS = 4
# How long closing a restore stream waits for its decoding thread to stop.
JOIN_TIMEOUT = 30.0


class _HashingReader:
    """The stored bytes as they arrive; at their end, size and SHA-256 must match."""

    def __init__(
        self, raw: IO[bytes], entry: ArtifactEntry, on_read: ProgressCallback | None = None
    ) -> None:
        self.raw, self.entry, self.on_read = raw, entry, on_read
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.raw.read(size if size > 0 else CHUNK_SIZE)
        if data:
            self.digest.update(data)
            self.count += len(data)
            if self.on_read is not None:
                self.on_read(len(data))
        else:
            self._check_end()
        return data

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def _check_end(self) -> None:
        if self.count != self.entry.size:
            raise IntegrityError(
                f"{self.entry.key} holds {self.count} bytes, the manifest says {self.entry.size}"
            )
        if self.digest.hexdigest() != self.entry.sha256:
            raise IntegrityError(f"{self.entry.key} does not match its SHA-256 in the manifest")


class _DecodingReader:
    """Hashes, decrypts and decompresses stored bytes, in pieces of at most CHUNK_SIZE.

    Output is bounded per read whatever the compression ratio, and a stream of
    several zstd frames decodes as one (independent frames are valid zstd).
    """

    def __init__(
        self,
        raw: IO[bytes],
        entry: ArtifactEntry,
        identity: Any | None,
        on_read: ProgressCallback | None,
    ) -> None:
        self.entry = entry
        self.hashing = _HashingReader(raw, entry, on_read)
        upstream: Any = self.hashing
        self.decrypting: crypto.DecryptingReader | None = None
        if entry.encryption is not None:
            if identity is None:
                raise IntegrityError(f"{entry.key} is encrypted but no key was given")
            self.decrypting = crypto.DecryptingReader(upstream, [identity])
            upstream = self.decrypting
        self.preamble: bytes | None = None
        self.decoded: Any = upstream
        if entry.compression == "zstd":
            try:  # the source's preamble, if one was stored (transfer/preamble.py)
                self.preamble, upstream = split_preamble(upstream, entry.key)
            except BaseException:
                self.close()
                raise
            self.decoded = zstandard.ZstdDecompressor().stream_reader(
                upstream, read_size=CHUNK_SIZE, read_across_frames=True, closefd=False
            )

    def read(self) -> bytes:
        """The next piece; b"" once every stored byte was read and checked."""
        try:
            data = bytes(self.decoded.read(CHUNK_SIZE))
        except zstandard.ZstdError:
            raise IntegrityError(f"{self.entry.key} does not decompress: it is corrupt") from None
        # The decoded end must be the stored end; reading there runs the size and SHA-256 check.
        if not data and self.hashing.read(CHUNK_SIZE):
            raise IntegrityError(f"{self.entry.key} goes on after its compressed stream ends")
        return data

    def close(self) -> None:
        if self.decrypting is not None:
            self.decrypting.close()


class VerifyingReader:
    """Hashes, decrypts and decompresses stored bytes; `verify()` settles the SHA-256.

    Any mismatch, truncation or undecodable byte raises IntegrityError, which
    sources let propagate before they commit anything to the target. The
    decoding (download, SHA-256, decryption, zstd) runs on its own thread a few
    chunks ahead, so it overlaps with the source writing the restored bytes.

    `preamble`: what the source stored ahead of its data (sources.base.preamble_of),
    read when the stream opens; like every byte, it is verified only by `verify()`.
    """

    def __init__(
        self,
        raw: IO[bytes],
        entry: ArtifactEntry,
        identity: Any | None = None,
        on_read: ProgressCallback | None = None,
    ) -> None:
        self._decoding = _DecodingReader(raw, entry, identity, on_read)
        self.preamble = self._decoding.preamble
        self._channel = ChunkChannel(depth=READ_AHEAD_CHUNKS)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._decode, name="restore-decode", daemon=True)
        self._thread.start()

    def read(self, size: int = -1, /) -> bytes:
        if size == 0:
            return b""
        if size > 0:
            return self._next(size)
        pieces = []
        while piece := self._next(-1):
            pieces.append(piece)
        return b"".join(pieces)

    def verify(self) -> None:
        while self._next(-1):
            pass

    def close(self) -> None:
        self._channel.close()  # a decoder still running gets BrokenPipeError and ends
        self._thread.join(JOIN_TIMEOUT)
        self._decoding.close()

    def _next(self, size: int) -> bytes:
        data = self._channel.read(size)
        if not data:
            self._thread.join(JOIN_TIMEOUT)
            if self._failure is not None:
                raise self._failure
        return data

    def _decode(self) -> None:
        try:
            while data := self._decoding.read():
                self._channel.write(data)
        except BrokenPipeError:
            return  # the reader closed first: nothing more is wanted
        except BaseException as exc:  # the reader raises it in its own thread
            self._failure = exc
        finally:
            with suppress(BrokenPipeError):
                self._channel.finish()


@contextmanager
def open_restore_stream(
    store: ObjectStore,
    entry: ArtifactEntry,
    keyring: crypto.Keyring | None = None,
    on_read: ProgressCallback | None = None,
) -> Iterator[VerifyingReader]:
    """`on_read` hears the number of stored bytes of each chunk as it is read."""
    identity = keyring.identity_for(entry.encryption) if entry.encryption and keyring else None
    with store.open_read(entry.key) as raw:
        reader = VerifyingReader(raw, entry, identity, on_read)
        try:
            yield reader
        finally:
            reader.close()


def restore_artifacts(
    *,
    store: ObjectStore,
    entries: Sequence[ArtifactEntry],
    source: Source,
    keyring: crypto.Keyring | None = None,
    on_read: ProgressCallback | None = None,
    before_commit: Callable[[], None] | None = None,
) -> None:
    """Stream a service's artifacts (its volumes, in order) back into its source.

    The source commits only after every stream's verify() has passed;
    `before_commit` runs after each verify() and may raise to stop it there.
    """
    if len(entries) == 1 and not source.volumes:
        with open_restore_stream(store, entries[0], keyring, on_read) as stream:
            source.restore(_gated(stream, before_commit))
        return
    if not source.volumes:
        raise IntegrityError(f"{source.kind} sources cannot restore {len(entries)} volumes")

    def streams() -> Iterator[RestoreStream]:
        for entry in entries:
            with ExitStack() as stack:
                stream = stack.enter_context(open_restore_stream(store, entry, keyring, on_read))
                yield _gated(stream, before_commit)

    source.restore_volumes(streams())


class _GatedStream:
    """A restore stream whose verify() also runs a last check (is the lock still ours?)."""

    def __init__(self, stream: RestoreStream, check: Callable[[], None]) -> None:
        self._stream, self._check = stream, check

    def read(self, size: int = -1, /) -> bytes:
        return self._stream.read(size)

    def verify(self) -> None:
        self._stream.verify()
        self._check()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _gated(stream: RestoreStream, check: Callable[[], None] | None) -> RestoreStream:
    return stream if check is None else _GatedStream(stream, check)


def restore_artifact(
    *,
    store: ObjectStore,
    entry: ArtifactEntry,
    source: Source,
    keyring: crypto.Keyring | None = None,
) -> None:
    """One artifact back into its source (see restore_artifacts)."""
    restore_artifacts(store=store, entries=[entry], source=source, keyring=keyring)

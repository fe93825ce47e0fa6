"""The pipeline against the in-memory store: parts, hashing, abort, verification."""

import hashlib
import os

import pytest
import zstandard

from tests.fakes import BytesSource, entry_of
from workers.errors import IntegrityError, SourceError
from workers.repository.manifest import ArtifactEntry
from workers.sources.base import CHUNK_SIZE
from workers.stores.memory import MemoryStore
from workers.transfer.download import VerifyingReader, _DecodingReader, restore_artifact
from workers.transfer.upload import FRAME_SIZE, StoredArtifact, store_artifact

KEY = "app/2023-02-02t17-03-15/blob.bin.zst"


def entry_for(stored: StoredArtifact) -> ArtifactEntry:
    return entry_of(stored, service="blob", fmt="bin")


def back_up(store: MemoryStore, data: bytes, part_size: int = 1 << 20) -> StoredArtifact:
    return store_artifact(
        store=store, key=KEY, source=BytesSource(data), part_size=part_size, compression_level=1
    )


def test_round_trip_in_many_parts() -> None:
    store = MemoryStore()
    data = os.urandom(3 * 1024 * 1024) + b"text " * 200_000
    stored = back_up(store, data, part_size=1 << 20)
    assert stored.source_size == len(data)
    assert stored.size == len(store.objects[KEY])
    assert stored.sha256 == hashlib.sha256(store.objects[KEY]).hexdigest()
    target = BytesSource(b"")
    restore_artifact(store=store, entry=entry_for(stored), source=target)
    assert target.restored == data


def test_an_empty_source_is_still_an_artifact() -> None:
    store = MemoryStore()
    stored = back_up(store, b"")
    target = BytesSource(b"x")
    restore_artifact(store=store, entry=entry_for(stored), source=target)
    assert target.restored == b""


def test_a_failed_dump_aborts_the_upload_and_stores_nothing() -> None:
    store = MemoryStore()
    with pytest.raises(SourceError):
        store_artifact(
            store=store,
            key=KEY,
            source=BytesSource(os.urandom(3 << 20), fail_after_dump=True),
            part_size=1 << 20,
            compression_level=1,
        )
    assert store.objects == {} and store.uploads == {}


@pytest.mark.parametrize("damage", ["flip", "truncate", "append"])
def test_damaged_bytes_never_reach_the_target(damage: str) -> None:
    store = MemoryStore()
    stored = back_up(store, os.urandom(1 << 20) + b"a" * 100_000)
    data = bytearray(store.objects[KEY])
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        del data[-10:]
    else:
        data += b"\0"
    store.objects[KEY] = bytes(data)
    target = BytesSource(b"")
    with pytest.raises(IntegrityError):
        restore_artifact(store=store, entry=entry_for(stored), source=target)
    assert target.restored is None


def test_reader_returns_exactly_what_is_asked() -> None:
    store = MemoryStore()
    data = bytes(range(256)) * 4096
    stored = back_up(store, data)
    reader = VerifyingReader(store.open_read(KEY), entry_for(stored))
    assert reader.read(10) == data[:10]
    assert reader.read(0) == b""
    assert reader.read() == data[10:]
    assert reader.read(5) == b""
    reader.verify()


def _store_raw(store: MemoryStore, stored_bytes: bytes, source_size: int) -> ArtifactEntry:
    """An artifact whose stored bytes are given as they are (not made by the pipeline)."""
    store.objects[KEY] = stored_bytes
    stored = StoredArtifact(
        key=KEY,
        size=len(stored_bytes),
        sha256=hashlib.sha256(stored_bytes).hexdigest(),
        source_size=source_size,
        facts={"kind": "bytes"},
        encryption=None,
        part_size=0,
    )
    return entry_for(stored)


def test_a_stream_of_several_zstd_frames_restores_as_one() -> None:
    store = MemoryStore()
    first, second = os.urandom(300_000), b"text " * 100_000
    compressor = zstandard.ZstdCompressor(level=1)
    entry = _store_raw(store, compressor.compress(first) + compressor.compress(second), 0)
    target = BytesSource(b"")
    restore_artifact(store=store, entry=entry, source=target)
    assert target.restored == first + second


def test_decoded_pieces_stay_small_whatever_the_compression_ratio() -> None:
    store = MemoryStore()
    data = bytes(64 << 20)  # 64 MiB of zeros compress to a few KiB: one stored chunk
    entry = _store_raw(store, zstandard.ZstdCompressor(level=1).compress(data), len(data))
    decoding = _DecodingReader(store.open_read(KEY), entry, None, None)
    sizes = []
    while piece := decoding.read():
        sizes.append(len(piece))
    assert sum(sizes) == len(data) and max(sizes) <= CHUNK_SIZE


def test_stored_bytes_after_the_compressed_stream_are_refused() -> None:
    store = MemoryStore()
    stored_bytes = zstandard.ZstdCompressor(level=1).compress(b"data" * 1000)
    # The manifest's size and SHA-256 cover the extra bytes: only the decoder can tell.
    entry = _store_raw(store, stored_bytes + b"\0" * 8, 4000)
    target = BytesSource(b"")
    with pytest.raises(IntegrityError):
        restore_artifact(store=store, entry=entry, source=target)
    assert target.restored is None


def test_closing_a_reader_early_stops_its_decoding_thread() -> None:
    store = MemoryStore()
    stored = back_up(store, os.urandom(8 << 20))  # more than the read-ahead holds
    reader = VerifyingReader(store.open_read(KEY), entry_for(stored))
    assert len(reader.read(10)) == 10
    reader.close()
    assert not reader._thread.is_alive()


def test_a_decoding_failure_is_raised_by_every_later_read_and_verify() -> None:
    store = MemoryStore()
    stored = back_up(store, os.urandom(1 << 20))
    store.objects[KEY] = store.objects[KEY][:-1]
    reader = VerifyingReader(store.open_read(KEY), entry_for(stored))
    with pytest.raises(IntegrityError, match="manifest says"):
        reader.read()
    with pytest.raises(IntegrityError):
        reader.read(10)
    with pytest.raises(IntegrityError):
        reader.verify()
    reader.close()


def test_every_frame_size_of_source_is_its_own_zstd_frame() -> None:
    store = MemoryStore()
    data = b"row,of,text\n" * (3 * FRAME_SIZE // 12 + 1000)
    back_up(store, data)
    stored_bytes = store.objects[KEY]
    first = zstandard.ZstdDecompressor().decompressobj()  # one frame only
    assert first.decompress(stored_bytes) == data[:FRAME_SIZE]
    assert first.unused_data  # the next frames follow
    whole = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
    assert whole.decompress(stored_bytes) == data

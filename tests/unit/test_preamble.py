"""A source's preamble (transfer/preamble.py): stored inside the artifact, handed back first."""

import io
import shutil
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest
import zstandard

from tests.fakes import BytesSource, entry_of
from workers.errors import IntegrityError
from workers.repository.manifest import ArtifactEntry
from workers.settings import Settings
from workers.sources.base import Dump, RestoreStream, preamble_of
from workers.stores.memory import MemoryStore
from workers.transfer import crypto
from workers.transfer.download import restore_artifact, restore_artifacts
from workers.transfer.parts import TransferOptions
from workers.transfer.preamble import MAGIC, MAX_SIZE
from workers.transfer.upload import StoredArtifact, upload_artifact

KEY = "app/2023-02-02t17-03-15/db.bin.zst"
PREAMBLE = b'{"roles": ["app_owner", "readers"]}'


class PreambleSource(BytesSource):
    """A byte string with a preamble; its restore keeps what the stream handed it first."""

    kind: ClassVar[str] = "bytes"

    def __init__(self, data: bytes, preamble: bytes | None) -> None:
        super().__init__(data)
        self.preamble = preamble
        self.seen: bytes | None = b"not asked"

    @contextmanager
    def dump(self) -> Iterator[Dump]:
        yield Dump(stream=io.BytesIO(self.data), facts={}, preamble=self.preamble)

    def restore(self, stream: RestoreStream) -> None:
        self.seen = preamble_of(stream)  # before a byte of the data is read
        super().restore(stream)


def store_with(
    store: MemoryStore, data: bytes, preamble: bytes | None, identity: Any = None
) -> tuple[StoredArtifact, ArtifactEntry]:
    stored = upload_artifact(
        store=store,
        key=KEY,
        open_dump=PreambleSource(data, preamble).dump,
        options=TransferOptions(part_size=1 << 20, identity=identity),
    )
    return stored, entry_of(stored, service="db", fmt="bin")


def back(store: MemoryStore, entry: ArtifactEntry, keyring: Any = None) -> PreambleSource:
    target = PreambleSource(b"", None)
    restore_artifact(store=store, entry=entry, source=target, keyring=keyring)
    return target


@pytest.mark.parametrize("data", [b"", b"pg_dump archive " * 100_000])
def test_the_preamble_comes_back_first_and_the_data_unchanged(data: bytes) -> None:
    store = MemoryStore()
    stored, entry = store_with(store, data, PREAMBLE)
    assert stored.source_size == len(data)  # the source's own bytes
    target = back(store, entry)
    assert target.seen == PREAMBLE and target.restored == data


def test_any_zstd_decoder_skips_it_so_the_artifact_is_still_the_plain_dump() -> None:
    store = MemoryStore()
    data = b"PGDMP" + bytes(range(256)) * 5000
    store_with(store, data, PREAMBLE)
    stored_bytes = store.objects[KEY]
    assert struct.unpack("<I", stored_bytes[:4])[0] == MAGIC
    reader = zstandard.ZstdDecompressor().stream_reader(
        io.BytesIO(stored_bytes), read_across_frames=True
    )
    assert reader.read() == data
    if zstd := shutil.which("zstd"):  # what an operator would run by hand
        done = subprocess.run([zstd, "-dc"], input=stored_bytes, capture_output=True, check=True)
        assert done.stdout == data


def test_an_artifact_without_one_restores_as_before() -> None:
    store = MemoryStore()
    _, entry = store_with(store, b"an old backup" * 1000, None)
    target = back(store, entry)
    assert target.seen is None and target.restored == b"an old backup" * 1000
    assert preamble_of(io.BytesIO(b"")) is None  # streams that know no preamble


def test_encrypted_it_is_never_in_the_stored_bytes() -> None:
    keyring = crypto.Keyring.from_settings(Settings(backup_encryption_key=crypto.generate_key()))
    store = MemoryStore()
    _, entry = store_with(store, b"data" * 1000, PREAMBLE, keyring.current)
    assert b"app_owner" not in store.objects[KEY]
    target = back(store, entry, keyring)
    assert target.seen == PREAMBLE and target.restored == b"data" * 1000


def test_a_changed_or_forged_preamble_is_refused() -> None:
    store = MemoryStore()
    _, entry = store_with(store, b"data" * 1000, PREAMBLE)
    good = store.objects[KEY]

    changed = bytearray(good)
    changed[10] ^= 0x20  # inside the preamble: the SHA-256 catches it before any commit
    store.objects[KEY] = bytes(changed)
    target = PreambleSource(b"", None)
    with pytest.raises(IntegrityError):
        restore_artifact(store=store, entry=entry, source=target)
    assert target.restored is None

    huge = struct.pack("<II", MAGIC, MAX_SIZE + 1) + good[8:]
    store.objects[KEY] = huge
    with pytest.raises(IntegrityError, match="preamble"):
        back(store, entry.model_copy(update={"size": len(huge)}))

    cut = good[: 8 + len(PREAMBLE) // 2]
    store.objects[KEY] = cut
    with pytest.raises(IntegrityError):
        back(store, entry.model_copy(update={"size": len(cut)}))


def test_a_gated_restore_stream_hands_it_on_too() -> None:
    store = MemoryStore()
    _, entry = store_with(store, b"data" * 1000, PREAMBLE)
    target = PreambleSource(b"", None)
    checked: list[bool] = []
    restore_artifacts(
        store=store, entries=[entry], source=target, before_commit=lambda: checked.append(True)
    )
    assert target.seen == PREAMBLE and checked == [True]

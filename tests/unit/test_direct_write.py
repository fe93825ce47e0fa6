"""DirectFile: restored bytes written with O_DIRECT, exactly, on any filesystem."""

import errno
import fcntl
import mmap
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.sources.direct_write import ALIGNMENT, BUFFER_SIZE, DirectFile, aligned_buffer


@pytest.fixture
def buffer() -> Iterator[mmap.mmap]:
    held = aligned_buffer()
    yield held
    held.close()


def write_in_pieces(path: Path, data: bytes, piece: int, buffer: mmap.mmap) -> bool:
    with DirectFile(path, buffer) as out:
        for start in range(0, len(data), piece):
            assert out.write(data[start : start + piece]) == len(data[start : start + piece])
        direct = out.direct
    return direct


SIZES = [
    0,
    1,
    ALIGNMENT - 1,
    ALIGNMENT,
    ALIGNMENT + 1,
    BUFFER_SIZE - 1,
    BUFFER_SIZE,
    BUFFER_SIZE + 1,
    3 * BUFFER_SIZE + 5 * ALIGNMENT + 123,
]


PIECES = [7, 16 * 1024, 256 * 1024, 5 * BUFFER_SIZE]
# Tiny pieces only for the small sizes: a MiB in 7-byte writes says nothing more.
CASES = [(size, piece) for size in SIZES for piece in PIECES if piece > 7 or size <= 2 * ALIGNMENT]


@pytest.mark.parametrize(("size", "piece"), CASES)
def test_every_byte_lands_whatever_the_sizes(
    tmp_path: Path, buffer: mmap.mmap, size: int, piece: int
) -> None:
    data = random.Random(size * 31 + piece).randbytes(size)

    write_in_pieces(tmp_path / "f", data, piece, buffer)

    assert (tmp_path / "f").read_bytes() == data


def test_the_file_is_really_opened_direct_where_the_filesystem_allows(
    tmp_path: Path, buffer: mmap.mmap
) -> None:
    with DirectFile(tmp_path / "f", buffer) as out:
        flags = fcntl.fcntl(out.fd, fcntl.F_GETFL)
        try:
            probe = os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
        except OSError:
            supported = False
        else:
            os.close(probe)
            supported = True
        assert out.direct is supported
        assert bool(flags & os.O_DIRECT) is supported


def test_a_filesystem_without_o_direct_gets_buffered_writes(
    tmp_path: Path, buffer: mmap.mmap, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refuse_direct(path: str, flags: int, mode: int = 0o777) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", refuse_direct)
    data = os.urandom(2 * BUFFER_SIZE + 99)

    assert write_in_pieces(tmp_path / "f", data, 65536, buffer) is False
    assert (tmp_path / "f").read_bytes() == data


def test_a_platform_without_o_direct_gets_buffered_writes(
    tmp_path: Path, buffer: mmap.mmap, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("workers.sources.direct_write.O_DIRECT", 0)
    data = os.urandom(BUFFER_SIZE + 4096 + 3)

    assert write_in_pieces(tmp_path / "f", data, 100_000, buffer) is False
    assert (tmp_path / "f").read_bytes() == data


def test_a_device_that_wants_a_larger_alignment_gets_the_rest_buffered(
    tmp_path: Path, buffer: mmap.mmap, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    refused: list[int] = []

    def refuse_direct_writes(fd: int, data: memoryview) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")  # nothing written, as the kernel does
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", refuse_direct_writes)
    data = os.urandom(BUFFER_SIZE * 2 + 5)

    direct = write_in_pieces(tmp_path / "f", data, 300_000, buffer)

    assert (tmp_path / "f").read_bytes() == data
    assert direct is False and len(refused) <= 1  # refused once at most, then buffered


def test_a_short_direct_write_goes_on_without_losing_or_repeating_bytes(
    tmp_path: Path, buffer: mmap.mmap, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    shortened: list[int] = []

    def short_once(fd: int, data: memoryview) -> int:
        direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        if not shortened and len(data) > 3 * ALIGNMENT:
            shortened.append(len(data))
            return real_write(fd, data[: ALIGNMENT + 100 if not direct else ALIGNMENT])
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", short_once)
    data = os.urandom(BUFFER_SIZE * 3 + 777)

    write_in_pieces(tmp_path / "f", data, BUFFER_SIZE, buffer)

    assert shortened and (tmp_path / "f").read_bytes() == data


def test_a_new_file_gets_the_umask_mode_and_an_old_one_is_truncated(
    tmp_path: Path, buffer: mmap.mmap
) -> None:
    old = os.umask(0o027)
    try:
        write_in_pieces(tmp_path / "f", b"x" * 10, 10, buffer)
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640
    (tmp_path / "g").write_bytes(b"y" * (BUFFER_SIZE * 2))

    write_in_pieces(tmp_path / "g", b"short", 5, buffer)

    assert (tmp_path / "g").read_bytes() == b"short"


def test_a_failure_closes_the_file_without_writing_the_rest(
    tmp_path: Path, buffer: mmap.mmap
) -> None:
    broke = pytest.raises(RuntimeError, match="source broke")
    with broke, DirectFile(tmp_path / "f", buffer) as out:
        out.write(b"z" * (ALIGNMENT + 3))
        fd = out.fd
        raise RuntimeError("source broke")

    assert out.fd == -1
    with pytest.raises(OSError):
        os.fstat(fd)
    assert (tmp_path / "f").stat().st_size == 0  # the buffered bytes were not written
    buffer[:4] = b"next"  # the buffer is still the caller's to reuse


@pytest.mark.parametrize("size", [0, 100, ALIGNMENT + 1])
def test_a_buffer_must_be_whole_blocks(size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 4096"):
        aligned_buffer(size)

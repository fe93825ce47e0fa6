"""CacheAwareReader: every byte, read from the page cache where it is cached, past it where not."""

import errno
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.sources import direct_read
from workers.sources.direct_read import CacheAwareReader, cached_pages
from workers.sources.direct_write import ALIGNMENT, BUFFER_SIZE, aligned_buffer

SIZES = [
    0,
    1,
    ALIGNMENT - 1,
    ALIGNMENT,
    BUFFER_SIZE - 1,
    BUFFER_SIZE,
    BUFFER_SIZE + 1,
    3 * BUFFER_SIZE + 5 * ALIGNMENT + 123,
]


@pytest.fixture
def buffer() -> Iterator[mmap.mmap]:
    held = aligned_buffer()
    yield held
    held.close()


def make_file(path: Path, size: int, *, cached: bool) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # clean pages can be dropped; dirty ones cannot
        if cached:
            os.pread(fd, size, 0)
        else:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return data


def read_all(path: Path, buffer: mmap.mmap, piece: int) -> tuple[bytes, int]:
    """The file read in `piece`-sized reads (as tarfile does), and the bytes read direct."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with CacheAwareReader(fd, os.fstat(fd).st_size, buffer) as reader:
            pieces = []
            while chunk := reader.read(piece):
                pieces.append(chunk)
            return b"".join(pieces), reader.direct_bytes
    finally:
        os.close(fd)


def cold_reads_work_here(tmp_path: Path) -> bool:
    """This kernel reports the cache (cachestat) and this filesystem drops clean pages
    on request and takes O_DIRECT: the conditions for the direct path."""
    probe = tmp_path / "probe"
    make_file(probe, 4 * ALIGNMENT, cached=False)
    fd = os.open(probe, os.O_RDONLY)
    try:
        if cached_pages(fd, 0, 0) != 0:
            return False
        try:
            os.close(os.open(probe, os.O_RDONLY | direct_read.O_DIRECT))
        except OSError:
            return False
        return True
    finally:
        os.close(fd)
        probe.unlink()


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "uncached"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("piece", [16 * 1024, BUFFER_SIZE, 3 * BUFFER_SIZE, -1])
def test_every_byte_comes_back(
    tmp_path: Path, buffer: mmap.mmap, size: int, piece: int, cached: bool
) -> None:
    data = make_file(tmp_path / "f", size, cached=cached)
    assert read_all(tmp_path / "f", buffer, piece)[0] == data


def test_uncached_bytes_are_read_past_the_page_cache(tmp_path: Path, buffer: mmap.mmap) -> None:
    if not cold_reads_work_here(tmp_path):
        pytest.skip("no cachestat, no O_DIRECT or no page dropping here")
    size = 3 * BUFFER_SIZE + 123
    data = make_file(tmp_path / "f", size, cached=False)

    read, direct = read_all(tmp_path / "f", buffer, BUFFER_SIZE)

    assert read == data
    assert direct == size
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert cached_pages(fd, 0, 0) == 0  # the backup left the page cache as it was
    finally:
        os.close(fd)


def test_cached_bytes_are_read_from_the_page_cache(tmp_path: Path, buffer: mmap.mmap) -> None:
    if not cold_reads_work_here(tmp_path):
        pytest.skip("no cachestat, no O_DIRECT or no page dropping here")
    data = make_file(tmp_path / "f", 2 * BUFFER_SIZE, cached=True)
    assert read_all(tmp_path / "f", buffer, BUFFER_SIZE) == (data, 0)


def test_a_partly_cached_file_is_read_chunk_by_chunk(tmp_path: Path, buffer: mmap.mmap) -> None:
    if not cold_reads_work_here(tmp_path):
        pytest.skip("no cachestat, no O_DIRECT or no page dropping here")
    data = make_file(tmp_path / "f", 3 * BUFFER_SIZE, cached=False)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead past the first MiB
        os.pread(fd, BUFFER_SIZE, BUFFER_SIZE)  # the middle MiB only
        if cached_pages(fd, 0, 0) != BUFFER_SIZE // mmap.PAGESIZE:
            pytest.skip("the kernel read ahead more than asked")
    finally:
        os.close(fd)

    assert read_all(tmp_path / "f", buffer, BUFFER_SIZE) == (data, 2 * BUFFER_SIZE)


def test_a_filesystem_refusing_o_direct_is_read_buffered(
    tmp_path: Path, buffer: mmap.mmap, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_file(tmp_path / "f", 2 * BUFFER_SIZE + 7, cached=False)
    real_fcntl = direct_read.fcntl.fcntl

    def refuse(fd: int, command: int, arg: int = 0) -> int:
        if command == direct_read.fcntl.F_SETFL and arg & direct_read.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return int(real_fcntl(fd, command, arg))

    monkeypatch.setattr(direct_read.fcntl, "fcntl", refuse)
    monkeypatch.setattr(direct_read, "cached_pages", lambda fd, offset, length: 0)

    assert read_all(tmp_path / "f", buffer, BUFFER_SIZE) == (data, 0)


def test_without_cachestat_every_read_is_buffered(
    tmp_path: Path, buffer: mmap.mmap, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_file(tmp_path / "f", 2 * BUFFER_SIZE, cached=False)
    monkeypatch.setattr(direct_read, "cached_pages", lambda fd, offset, length: None)
    assert read_all(tmp_path / "f", buffer, BUFFER_SIZE) == (data, 0)

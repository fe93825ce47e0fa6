"""A directory restore never creates device nodes or FIFOs, nor setuid/setgid files, unless
the service opts in with `special_files = true`; owners, ordinary modes, links and mtimes stay.

Run as root (as here), the old code really created the character device and the
setuid-root file: these tests fail on it.
"""

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from tests.fakes import BytesSource, stored_entry
from workers.repository.manifest import artifact_key
from workers.services_config import parse_fleet_config
from workers.settings import Settings
from workers.sources import make_source
from workers.sources.directory import DirectorySource
from workers.stores.memory import MemoryStore
from workers.transfer.download import restore_artifact

KEY = artifact_key("app", "2024-01-02t03-04-05", "files", "tar", "zstd")
IS_ROOT = os.geteuid() == 0
MTIME = 1_600_000_000


def _member(name: str, kind: bytes, mode: int, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, MTIME
    info.uid = info.gid = 0
    for field, value in fields.items():
        setattr(info, field, value)
    return info


def planted_tar() -> bytes:
    """What a forged (or careless) backup could hold: a setuid-root shell, /dev/null's twin…"""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_member(".", tarfile.DIRTYPE, 0o755))
        for name, mode in (("./suid", 0o4755), ("./sgid", 0o2711), ("./plain", 0o640)):
            data = name.encode()
            owner = {"uid": 1234, "gid": 2345} if name == "./plain" else {}
            tar.addfile(
                _member(name, tarfile.REGTYPE, mode, size=len(data), **owner), io.BytesIO(data)
            )
        tar.addfile(_member("./null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3))
        tar.addfile(_member("./disk", tarfile.BLKTYPE, 0o660, devmajor=7, devminor=0))
        tar.addfile(_member("./fifo", tarfile.FIFOTYPE, 0o644))
        tar.addfile(_member("./fifo again", tarfile.LNKTYPE, 0o644, linkname="./fifo"))
        tar.addfile(_member("./shared", tarfile.DIRTYPE, 0o2775))  # group-inheriting folder
        tar.addfile(_member("./empty", tarfile.DIRTYPE, 0o700))
        tar.addfile(_member("./link", tarfile.SYMTYPE, 0o777, linkname="plain"))
    return out.getvalue()


def restore(tmp_path: Path, *, special_files: bool) -> Path:
    store = MemoryStore()
    entry = stored_entry(store, BytesSource(planted_tar()), key=KEY, service="files")
    target = tmp_path / "restored"
    source = DirectorySource(target, special_files=special_files)
    restore_artifact(store=store, entry=entry, source=source)
    return target


def test_special_files_and_privilege_bits_are_left_out(tmp_path: Path) -> None:
    target = restore(tmp_path, special_files=False)

    assert sorted(os.listdir(target)) == ["empty", "link", "plain", "sgid", "shared", "suid"]
    assert stat.S_IMODE(os.lstat(target / "suid").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(target / "sgid").st_mode) == 0o711
    # What is ordinary stays: modes, owners, a setgid folder, links, empty folders, mtimes.
    plain = os.lstat(target / "plain")
    assert stat.S_IMODE(plain.st_mode) == 0o640 and plain.st_mtime == MTIME
    if IS_ROOT:
        assert (plain.st_uid, plain.st_gid) == (1234, 2345)
    assert stat.S_IMODE(os.lstat(target / "shared").st_mode) == 0o2775
    assert stat.S_IMODE(os.lstat(target / "empty").st_mode) == 0o700
    assert os.readlink(target / "link") == "plain"
    assert (target / "plain").read_bytes() == b"./plain"


@pytest.mark.skipif(not IS_ROOT, reason="creating device nodes needs root")
def test_a_service_that_opts_in_gets_them_back(tmp_path: Path) -> None:
    target = restore(tmp_path, special_files=True)

    assert stat.S_ISCHR(os.lstat(target / "null").st_mode)
    assert os.major(os.lstat(target / "null").st_rdev) == 1
    assert stat.S_ISBLK(os.lstat(target / "disk").st_mode)
    assert stat.S_ISFIFO(os.lstat(target / "fifo").st_mode)
    assert os.lstat(target / "fifo again").st_ino == os.lstat(target / "fifo").st_ino
    assert stat.S_IMODE(os.lstat(target / "suid").st_mode) == 0o4755


def test_the_services_file_key_reaches_the_source() -> None:
    config = parse_fleet_config(
        """
namespace = "app"
[services.dev]
kind = "directory"
path = "/srv/dev"
special_files = true
[services.files]
kind = "directory"
path = "/srv/files"
"""
    )
    settings = Settings()
    services = config.services_of("app")
    dev, files = make_source(services["dev"], settings), make_source(services["files"], settings)
    assert isinstance(dev, DirectorySource) and dev.special_files is True
    assert isinstance(files, DirectorySource) and files.special_files is False
    with pytest.raises(Exception, match="special_files"):
        parse_fleet_config('[services.db]\nkind = "sqlite"\npath = "/x.db"\nspecial_files = true\n')

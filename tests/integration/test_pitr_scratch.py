"""The scratch PostgreSQL on a real base backup: gone after SIGTERM, after its worker is
killed (by the next scratch), and the base backup's facts read however the tar is cut."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pitr_cluster import PitrCluster, scratch_processes
from tests.pitr_cluster import pitr_cluster as pitr_cluster  # the fixture
from tests.pitr_cluster import scratch_root as scratch_root  # the fixture
from workers.pitr.scratch import ScratchPostgres
from workers.sources.pgbase import PgBaseSource
from workers.sources.pgbase_facts import BaseBackupTar

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base_tar(pitr_cluster: PitrCluster) -> Iterator[Path]:
    """pg_basebackup's tar of the cluster, as a file, and its facts."""
    folder = Path(tempfile.mkdtemp(prefix="backfleet-test-pitr-tar-"))
    path = folder / "base.tar"
    source = PgBaseSource(pitr_cluster.url(pitr_cluster.fresh_database()))
    with source.dump() as dump, path.open("wb") as out:
        while chunk := dump.stream.read(1 << 20):
            out.write(chunk)
    (folder / "system_identifier").write_text(dump.facts["system_identifier"])
    try:
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def start_child(root: Path, tar: Path) -> tuple["subprocess.Popen[str]", Path]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.pitr_scratch_child", str(root), str(tar)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    assert line, f"the child did not start its scratch (exit {child.poll()})"
    folder = Path(line)
    assert folder.parent == root and (folder / "data" / "postmaster.pid").exists()
    assert scratch_processes(root)
    return child, folder


def test_sigterm_stops_and_removes_the_scratch_then_ends_the_worker(
    base_tar: Path, scratch_root: Path
) -> None:
    child, folder = start_child(scratch_root, base_tar)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == -signal.SIGTERM  # the signal did what it does, after
    assert not folder.exists()
    assert scratch_processes(scratch_root) == []


def test_a_killed_workers_scratch_dies_with_it_and_the_next_scratch_removes_it(
    base_tar: Path, scratch_root: Path
) -> None:
    child, folder = start_child(scratch_root, base_tar)
    child.kill()
    child.wait(timeout=30)
    for _ in range(100):  # the kernel's SIGKILL to the server, then its backends' exit
        if not scratch_processes(scratch_root):
            break
        subprocess.run(["sleep", "0.1"], check=True)
    assert scratch_processes(scratch_root) == []
    assert folder.exists()  # nobody was left to remove it

    with ScratchPostgres(root=scratch_root, timeout=10):
        assert not folder.exists()
    assert list(scratch_root.iterdir()) == []


@pytest.mark.parametrize("size", [511, 512, 513, 65536, -1])
def test_the_facts_are_read_however_the_stream_is_cut(base_tar: Path, size: int) -> None:
    with base_tar.open("rb") as raw:
        tar = BaseBackupTar(raw)
        total = 0
        while chunk := tar.read(size if size > 0 else 1 << 22):
            total += len(chunk)
    assert total == base_tar.stat().st_size
    facts = tar.facts()
    recorded = (base_tar.parent / "system_identifier").read_text()
    assert facts["system_identifier"] == recorded
    assert facts["timeline"] == facts["start_timeline"] == 1


def test_a_cut_tar_is_refused(base_tar: Path) -> None:
    from workers.errors import SourceError

    data = base_tar.read_bytes()
    tar = BaseBackupTar(_Bytes(data[: len(data) // 2]))
    while tar.read(1 << 20):
        pass
    with pytest.raises(SourceError, match="incomplete"):
        tar.facts()


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data, self.position = data, 0

    def read(self, size: int = -1, /) -> bytes:
        end = len(self.data) if size < 0 else self.position + size
        piece = self.data[self.position : end]
        self.position += len(piece)
        return piece

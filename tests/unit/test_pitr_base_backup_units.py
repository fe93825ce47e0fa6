"""Fast checks of the base-backup pieces: the registry's mode, the tar's facts, the scratch
server's configuration (no server runs here; tests/integration/test_pitr_*.py run them)."""

import io
import json
import os
import pwd
import shlex
import shutil
import struct
import tarfile
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from workers.errors import ConfigError, IntegrityError, SourceError
from workers.pitr.restore_source import checked_facts, restore_source
from workers.pitr.scratch import Recovery, ScratchPostgres
from workers.pitr.unpack import unpack_base_backup
from workers.repository.manifest import ArtifactEntry
from workers.services_config import ServiceSpec
from workers.settings import Settings
from workers.sources import class_of, make_source, mode_of, spec_for_format
from workers.sources import pg_server as pg_server_module
from workers.sources.pgbase import PgBaseSource
from workers.sources.pgbase_facts import BaseBackupTar
from workers.sources.postgres import PostgresSource

URL = "postgresql://backup@db.internal:5432/app"
LABEL = (
    "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"
    "CHECKPOINT LOCATION: 0/2000060\nSTART TIMELINE: 1\n"
)
MANIFEST = (
    '{ "PostgreSQL-Backup-Manifest-Version": 1,\n"Files": [],\n'
    '"WAL-Ranges": [\n{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }\n],\n'
    '"Manifest-Checksum": "abc"}\n'
)


def base_tar(*, members: dict[str, bytes] | None = None) -> bytes:
    control = struct.pack("<Q", 7716702296151516984) + b"\0" * 8184
    files = members or {
        "PG_VERSION": b"15\n",
        "backup_label": LABEL.encode(),
        "global/pg_control": control,
        "base/1/1259": os.urandom(20000),
        "backup_manifest": b" " * 100_000 + MANIFEST.encode(),  # longer than the tail kept
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_pitr_chooses_the_base_backup_mode_and_an_artifact_its_own_format() -> None:
    pitr = ServiceSpec(kind="postgres", url=URL, pitr=True)
    plain = ServiceSpec(kind="postgres", url=URL)
    assert mode_of(pitr) == "pgbase" and mode_of(plain) is None
    assert class_of(pitr) is PgBaseSource and class_of(plain) is PostgresSource
    assert spec_for_format(pitr, "pgdump").pitr is False
    assert spec_for_format(plain, "pgbase").pitr is True
    sqlite = ServiceSpec(kind="sqlite", path=Path("/x.db"))
    assert spec_for_format(sqlite, "sqlite") is sqlite


def test_a_base_backup_restores_through_a_scratch_and_a_dump_as_a_dump() -> None:
    settings = Settings()
    pitr = ServiceSpec(kind="postgres", url=URL, pitr=True)
    entry = ArtifactEntry(
        service="pg",
        key="app/2024-05-06t07-08-09/pg.pgbase.zst",
        format="pgbase",
        compression="zstd",
        size=1,
        sha256="0" * 64,
        source_size=1,
        source={"database": "app"},
    )
    through = restore_source(pitr, entry, settings)
    assert through.format == "pgbase" and type(through).__name__ == "BaseBackupRestore"
    dump = restore_source(pitr, entry.model_copy(update={"format": "pgdump"}), settings)
    assert type(dump) is PostgresSource
    with pytest.raises(SourceError, match="restored through a scratch"):
        make_source(pitr, settings).restore(io.BytesIO(b""))  # type: ignore[arg-type]


def test_checked_facts_give_a_drill_the_scratch_servers_counts() -> None:
    class Counted:
        scratch_counts = {"public.t": 3}

    facts = [{"database": "app"}]
    assert checked_facts(Counted(), facts) == [  # type: ignore[arg-type]
        {"database": "app", "row_counts": {"public.t": 3}}
    ]
    plain = [{"row_counts": {"t": 1}}]
    assert checked_facts(object(), plain) == plain  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [100, 512, 4096, 1 << 20])
def test_the_facts_come_from_the_tar_as_it_passes(size: int) -> None:
    data = base_tar()
    tar = BaseBackupTar(io.BytesIO(data))
    passed = b"".join(iter(lambda: tar.read(size), b""))
    assert passed == data
    assert tar.facts() == {
        "system_identifier": "7716702296151516984",
        "timeline": 1,
        "start_timeline": 1,
        "start_lsn": "0/2000028",
        "end_lsn": "0/2000100",
    }
    assert len(tar.members["backup_manifest"]) <= 64 * 1024  # only its tail is kept
    assert json.loads(MANIFEST)["WAL-Ranges"][0]["End-LSN"] == "0/2000100"


def test_a_tar_without_its_manifest_is_not_a_base_backup(tmp_path: Path) -> None:
    data = base_tar(members={"PG_VERSION": b"15\n", "backup_label": LABEL.encode()})
    tar = BaseBackupTar(io.BytesIO(data))
    while tar.read(1 << 16):
        pass
    with pytest.raises(SourceError, match="incomplete: backup_manifest, global/pg_control"):
        tar.facts()
    with pytest.raises(IntegrityError, match="lacks global/pg_control, backup_manifest"):
        unpack_base_backup(io.BytesIO(data), tmp_path / "data")


def test_unpacking_keeps_every_member_inside_the_data_folder(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    out.seek(0)
    with pytest.raises(IntegrityError, match="not a readable tar"):
        unpack_base_backup(out, tmp_path / "data")
    assert not (tmp_path / "escaped").exists()

    unpack_base_backup(io.BytesIO(base_tar()), tmp_path / "ok")
    assert (tmp_path / "ok" / "global" / "pg_control").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ok").stat().st_mode & 0o777 == 0o700


def settings_of(conf: Path) -> dict[str, str]:
    pairs = (line.split(" = ", 1) for line in conf.read_text().splitlines())
    return {name: value.strip("'").replace("''", "'") for name, value in pairs}


@pytest.fixture
def short_root() -> Iterator[Path]:
    """A root short enough for the socket's path (pytest's tmp_path is not)."""
    folder = Path(tempfile.mkdtemp(prefix="bf-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_scratch_server_recovers_to_the_consistent_point_or_to_a_moment(
    short_root: Path,
) -> None:
    me = pwd.getpwuid(os.geteuid()).pw_name  # no switch of user in this test
    root = short_root / "it's"  # a quote in the path survives the config's quoting
    with ScratchPostgres(root=root, timeout=5, user=me) as scratch:
        folder = scratch.folder
        assert folder.parent == root and folder.stat().st_mode & 0o777 == 0o700
        (scratch.data / "standby.signal").write_text("")
        (scratch.data / "postgresql.auto.conf").write_text("shared_preload_libraries = 'x'\n")
        scratch._configure(Recovery())
        conf = settings_of(folder / "postgresql.conf")
        assert conf["recovery_target"] == "immediate"
        assert conf["listen_addresses"] == "" and conf["hot_standby"] == "off"
        assert conf["unix_socket_directories"] == str(scratch.socket_dir)
        wal = f"{scratch.wal_dir}/%f"  # as the shell that runs restore_command reads it
        assert shlex.split(conf["restore_command"]) == ["test", "-f", wal, "&&", "cp", wal, "%p"]
        assert (scratch.data / "recovery.signal").exists()
        assert not (scratch.data / "standby.signal").exists()
        assert (scratch.data / "postgresql.auto.conf").read_text() == ""

        moment = datetime(2024, 5, 6, 9, 8, 9, 250000, tzinfo=timezone(timedelta(hours=2)))
        scratch._configure(Recovery(target_time=moment, inclusive=False))
        conf = settings_of(folder / "postgresql.conf")
        assert conf["recovery_target_time"] == "2024-05-06 07:08:09.250000+00"
        assert conf["recovery_target_inclusive"] == "off" and "recovery_target" not in conf
        assert moment.astimezone(UTC).hour == 7
    assert not folder.exists()


def test_missing_server_programs_are_named_with_their_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(pg_server_module, "DEBIAN_LIBDIR", tmp_path / "none")
    with pytest.raises(ConfigError, match=r"PostgreSQL 16 server .* postgresql-16"):
        pg_server_module.server_programs(16)


def test_a_scratch_root_too_long_for_a_socket_is_refused(tmp_path: Path) -> None:
    me = pwd.getpwuid(os.geteuid()).pw_name
    root = tmp_path / ("x" * 90)
    with (
        pytest.raises(ConfigError, match="too long"),
        ScratchPostgres(root=root, timeout=1, user=me),
    ):
        pass
    assert list(root.iterdir()) == []

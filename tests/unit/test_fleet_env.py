"""var/fleet.env: what `backfleet up` writes so that other shells find its fleet, and
what keeps a shell from mixing two fleets' settings or reading a file it should not."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

from workers.cli import fleet_env as fleet_env_module
from workers.cli.fleet_env import (
    ENV_FILE_VARIABLE,
    load_fleet_env,
    stopped_up_hint,
    write_fleet_env,
)
from workers.errors import ConfigError


def fleet_env(tmp_path: Path, env: dict[str, str], generated: tuple[str, ...] = ()) -> Path:
    var = tmp_path / "var"
    var.mkdir(exist_ok=True)
    return write_fleet_env(var, env, generated)


def test_written_then_read_back(tmp_path: Path) -> None:
    env = {
        "BROKER_URL": "redis://127.0.0.1:40123/0",
        "DATABASE_URL": f"sqlite:///{tmp_path}/var/backfleet.db",
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp_path / "a folder with 'quotes'"),
        "BACKFLEET_CONFIG": str(tmp_path / "backfleet.toml"),
        "BACKUP_SIGNING_KEY": "generated-key-0123456789-abcdefghijklmnop",
        "AWS_SECRET_KEY": "never-written",
    }
    path = fleet_env(tmp_path, env, ("BACKUP_SIGNING_KEY",))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "never-written" not in path.read_text()
    shell: dict[str, str] = {}
    assert load_fleet_env(shell, tmp_path) == path
    for name in ("BROKER_URL", "DATABASE_URL", "OBJECT_STORE_LOCATION_LOCAL", "BACKFLEET_CONFIG"):
        assert shell[name] == env[name]
    assert shell["BACKUP_SIGNING_KEY"] == env["BACKUP_SIGNING_KEY"]
    assert "AWS_SECRET_KEY" not in shell


def test_one_fleet_or_the_other_never_a_mix(tmp_path: Path) -> None:
    """A shell with its own catalog, in the folder of another fleet: nothing of the file is
    taken (else it would apply the other fleet's services file to this catalog)."""
    path = fleet_env(
        tmp_path, {"BROKER_URL": "redis://127.0.0.1:1/0", "DATABASE_URL": "sqlite:///x"}
    )
    said: list[str] = []
    shell = {"DATABASE_URL": "postgresql://prod/catalog"}
    assert load_fleet_env(shell, tmp_path, say=said.append) is None
    assert shell == {"DATABASE_URL": "postgresql://prod/catalog"}
    assert said == [f"note: not reading {path}: DATABASE_URL is set in the environment"]
    # REDIS_URL names the broker too.
    assert load_fleet_env({"REDIS_URL": "redis://other/0"}, tmp_path, say=said.append) is None
    # Named outright, the file and a conflicting variable are refused together.
    with pytest.raises(ConfigError, match="unset one or the other"):
        load_fleet_env({"BACKFLEET_ENV_FILE": str(path), "BROKER_URL": "redis://x/0"}, Path("/"))


def test_a_secret_the_user_gave_is_not_written_and_must_be_exported(tmp_path: Path) -> None:
    for url in ("postgresql://u:pw-S3cret@db/x", "postgresql://u@db/x?password=pw-S3cret"):
        path = fleet_env(tmp_path, {"DATABASE_URL": url, "BROKER_URL": "redis://127.0.0.1:1/0"})
        assert "pw-S3cret" not in path.read_text()
        with pytest.raises(ConfigError, match=r"leaves out DATABASE_URL .*export it"):
            load_fleet_env({}, tmp_path)
        shell = {"DATABASE_URL": url}
        assert load_fleet_env(shell, tmp_path) == path
        assert shell["BROKER_URL"] == "redis://127.0.0.1:1/0"


def test_the_variable_points_anywhere_and_must_exist(tmp_path: Path) -> None:
    path = fleet_env(tmp_path, {"BROKER_URL": "redis://127.0.0.1:1/0"})
    shell = {"BACKFLEET_ENV_FILE": str(path)}
    load_fleet_env(shell, Path("/"))
    assert shell["BROKER_URL"] == "redis://127.0.0.1:1/0"
    with pytest.raises(ConfigError, match=r"BACKFLEET_ENV_FILE names .*which does not exist"):
        load_fleet_env({"BACKFLEET_ENV_FILE": str(tmp_path / "nope.env")}, Path("/"))
    assert load_fleet_env({}, tmp_path / "no-var-here") is None


def test_only_its_own_settings_from_a_file_only_this_user_may_write(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    file = var / "fleet.env"
    file.write_text("RETENTION_KEEP_DAILY=0\n")
    file.chmod(0o600)
    with pytest.raises(ConfigError, match="RETENTION_KEEP_DAILY is not a setting this file may"):
        load_fleet_env({}, tmp_path)
    file.write_text("BROKER_URL=redis://127.0.0.1:1/0\n")
    file.chmod(0o622)
    with pytest.raises(ConfigError, match="others may write it"):
        load_fleet_env({}, tmp_path)
    file.chmod(0o600)
    file.write_text("# ok\nBROKER_URL='unterminated\n")
    with pytest.raises(ConfigError, match=r"fleet\.env, line 2: not NAME=value"):
        load_fleet_env({}, tmp_path)


def test_a_leftover_staging_file_is_never_reused(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    leftover = var / ".fleet.env.new"
    leftover.write_text("stale")
    leftover.chmod(0o644)
    path = write_fleet_env(var, {"BROKER_URL": "redis://127.0.0.1:1/0"}, ["BACKUP_SIGNING_KEY"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and not leftover.exists()
    assert os.stat(path).st_uid == os.getuid()


def test_the_writer_is_recorded_and_an_error_says_when_it_has_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    for pid, hint in ((os.getpid(), ""), (gone.pid, f"(pid {gone.pid}), which is no longer")):
        write_fleet_env(tmp_path, {"BROKER_URL": "redis://127.0.0.1:1/0"}, [], up_pid=pid)
        load_fleet_env({ENV_FILE_VARIABLE: str(tmp_path / "fleet.env")}, tmp_path)
        assert hint in stopped_up_hint() and bool(stopped_up_hint()) == bool(hint)
    monkeypatch.setattr(fleet_env_module, "loaded", None)
    assert stopped_up_hint() == ""

"""var/fleet.env: what `backfleet up` writes so that other shells find its fleet."""

import stat
from pathlib import Path

import pytest

from workers.cli.fleet_env import load_fleet_env, write_fleet_env
from workers.errors import ConfigError


def test_written_then_read_back_with_explicit_settings_winning(tmp_path: Path) -> None:
    env = {
        "BROKER_URL": "redis://127.0.0.1:40123/0",
        "DATABASE_URL": f"sqlite:///{tmp_path}/var/backfleet.db",
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp_path / "a folder with 'quotes'"),
        "BACKFLEET_CONFIG": str(tmp_path / "backfleet.toml"),
        "BACKUP_SIGNING_KEY": "generated-key-0123456789",
        "AWS_SECRET_KEY": "never-written",
    }
    var = tmp_path / "var"
    var.mkdir()
    path = write_fleet_env(var, env, ["BACKUP_SIGNING_KEY"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "never-written" not in path.read_text()

    shell = {"DATABASE_URL": "sqlite:////elsewhere.db"}
    assert load_fleet_env(shell, tmp_path) == path
    assert shell["DATABASE_URL"] == "sqlite:////elsewhere.db"  # the shell's own setting wins
    for name in ("BROKER_URL", "OBJECT_STORE_LOCATION_LOCAL", "BACKFLEET_CONFIG"):
        assert shell[name] == env[name]
    assert shell["BACKUP_SIGNING_KEY"] == "generated-key-0123456789"
    assert "AWS_SECRET_KEY" not in shell


def test_a_password_the_user_gave_is_not_copied_to_disk(tmp_path: Path) -> None:
    path = write_fleet_env(tmp_path, {"DATABASE_URL": "postgresql://u:pw-S3cret@db/x"}, [])
    assert "pw-S3cret" not in path.read_text()
    assert "DATABASE_URL holds a password" in path.read_text()


def test_the_variable_points_anywhere_and_must_exist(tmp_path: Path) -> None:
    write_fleet_env(tmp_path, {"BROKER_URL": "redis://127.0.0.1:1/0"}, [])
    shell = {"BACKFLEET_ENV_FILE": str(tmp_path / "fleet.env")}
    load_fleet_env(shell, Path("/"))
    assert shell["BROKER_URL"] == "redis://127.0.0.1:1/0"
    with pytest.raises(ConfigError, match=r"BACKFLEET_ENV_FILE names .*which does not exist"):
        load_fleet_env({"BACKFLEET_ENV_FILE": str(tmp_path / "nope.env")}, Path("/"))
    assert load_fleet_env({}, tmp_path / "no-var-here") is None


def test_a_damaged_line_is_named(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "fleet.env").write_text("# ok\nBROKER_URL='unterminated\n")
    with pytest.raises(ConfigError, match=r"fleet\.env, line 2: not NAME=value"):
        load_fleet_env({}, tmp_path)

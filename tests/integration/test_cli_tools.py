"""`backfleet keygen`, `check` and `backup --dry-run` as a user runs them."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path, redis_server: Any) -> dict[str, str]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("hello " * 1000)
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("CREATE TABLE t (x)")
    config = tmp_path / "backfleet.toml"
    config.write_text(
        f'[services.files]\nkind = "directory"\npath = "{data}"\n'
        f'[services.db]\nkind = "sqlite"\npath = "{tmp_path / "app.db"}"\n'
    )
    values = {
        **os.environ,
        "BROKER_URL": redis_server.url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/catalog.db",
        "BACKFLEET_CONFIG": str(config),
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp_path / "store"),
    }
    values.pop("REDIS_URL", None)
    return values


def test_keygen_prints_a_usable_key(env: dict[str, str]) -> None:
    made = cli(env, "keygen")
    key = made.stdout.strip()
    assert made.returncode == 0 and key.startswith("AGE-SECRET-KEY-1")
    assert "key id" in made.stderr and key not in made.stderr
    encrypted = cli({**env, "BACKUP_ENCRYPTION_KEY": key}, "backup", "--dry-run")
    assert encrypted.returncode == 0, encrypted.stderr


def test_check_says_exactly_what_is_wrong(env: dict[str, str], tmp_path: Path) -> None:
    first = cli(env, "check")
    assert first.returncode == 1
    assert "FAIL catalog" in first.stdout and "backfleet migrate" in first.stdout
    assert "FAIL store" in first.stdout and "store init" in first.stdout
    assert "ok   broker" in first.stdout and "ok   app/files" in first.stdout

    assert cli(env, "migrate").returncode == 0 and cli(env, "store", "init").returncode == 0
    (tmp_path / "app.db").unlink()
    second = cli(env, "check")
    assert "ok   catalog" in second.stdout and "ok   store" in second.stdout
    assert "FAIL app/db" in second.stdout and "does not exist" in second.stdout
    leftovers = [path for path in (tmp_path / "store").rglob("*") if path.is_file()]
    assert leftovers == []  # the probe object is gone again
    assert "ok   keys: no encryption or signing key set" in second.stdout


def test_check_refuses_keys_that_cannot_work(env: dict[str, str]) -> None:
    """A key is checked when `check` runs, not when the first backup needs it (issue 20)."""
    bad = cli({**env, "BACKUP_ENCRYPTION_KEY": "notakey-Xy7"}, "check")
    assert bad.returncode == 1
    assert "FAIL keys: BACKUP_ENCRYPTION_KEY is not an age identity" in bad.stdout
    assert "notakey-Xy7" not in bad.stdout + bad.stderr
    short = cli({**env, "BACKUP_SIGNING_KEY": "long-enough-" * 4 + ",tiny-Zq9"}, "check")
    assert short.returncode == 2 and "BACKUP_SIGNING_KEY" in short.stderr  # the settings refuse
    assert "tiny-Zq9" not in short.stdout + short.stderr
    key = cli(env, "keygen").stdout.strip()
    good = cli({**env, "BACKUP_ENCRYPTION_KEY": key}, "check")
    assert "ok   keys: encryption key " in good.stdout


def test_dry_run_streams_everything_and_stores_nothing(env: dict[str, str], tmp_path: Path) -> None:
    result = cli(env, "backup", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:]}
    assert int(lines["files"][1]) > 6000 and int(lines["files"][2]) < int(lines["files"][1])
    assert "db" in lines
    assert not (tmp_path / "store").exists()

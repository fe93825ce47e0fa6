"""The command line as a script sees it (issue 20): exit codes that say what went wrong,
messages that name the server and the setting to fix, no Failed row for a request the
broker never took, `--wait` that gives up on a queue no worker consumes, `restore latest`.

Driven as a user does: `python -m workers.cli` in a subprocess, against a real Redis,
a real SQLite catalog and the local store.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import Backup, Restore
from workers.cli.embedded_redis import free_port
from workers.fleet import build_fleet
from workers.operations.backup import run_backup
from workers.settings import Settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-Pass-9"


@pytest.fixture
def env(tmp_path: Path, redis_server: Any) -> dict[str, str]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("hello\n")
    services = tmp_path / "backfleet.toml"
    services.write_text(f'[services.files]\nkind = "directory"\npath = "{data}"\n')
    broker = str(redis_server.url)
    redis.Redis.from_url(broker).flushdb()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_"))},
        "PYTHONPATH": str(ROOT),
        "BROKER_URL": broker,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}",
        "BACKFLEET_CONFIG": str(services),
        "OBJECT_STORE_LOCATION_TYPE": "local",
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp_path / "store"),
    }
    upgrade_catalog(environment["DATABASE_URL"])
    dispose_engines()
    return environment


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def rows(env: dict[str, str]) -> tuple[list[str], list[str]]:
    """Every backup's and restore's status in the catalog."""
    with session_scope(env["DATABASE_URL"]) as session:
        backups = [row.status for row in session.query(Backup)]
        restores = [row.status for row in session.query(Restore)]
    dispose_engines()
    return backups, restores


def a_successful_backup(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    fleet = build_fleet(Settings())
    fleet.store.init()
    with session_scope(fleet.settings.database_url) as session:
        stamp = queries.create_backup(
            session, namespace="app", services=["files"], only_config=False, trigger="test"
        ).timestamp
    assert run_backup(fleet, namespace="app", timestamp=stamp).status == "Success"
    dispose_engines()
    return stamp


def test_a_broker_that_does_not_answer_is_named_and_leaves_no_failed_row(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stamp = a_successful_backup(env, monkeypatch)
    dead = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    down = {**env, "BROKER_URL": dead}
    for args, what in (
        (("backup",), "backup"),
        (("restore", stamp), "restore"),
        (("restore", "latest"), "restore"),
    ):
        refused = cli(down, *args)
        assert refused.returncode == 3, refused.stderr
        assert f"the broker at redis://:***@127.0.0.1:{dead.rsplit(':', 1)[1]}" in refused.stderr
        assert "(BROKER_URL)" in refused.stderr and f"the {what} task" in refused.stderr
        assert SECRET not in refused.stdout + refused.stderr
    # Only the backup made above: nothing recorded for the three requests never queued.
    assert rows(env) == (["Success"], [])
    listed = cli(env, "list", "--json")
    assert listed.returncode == 0 and listed.stdout.count('"timestamp"') == 1


def test_a_catalog_that_does_not_answer_is_exit_3_naming_database_url(
    env: dict[str, str],
) -> None:
    down = {**env, "DATABASE_URL": f"postgresql://backfleet:{SECRET}@127.0.0.1:{free_port()}/x"}
    done = cli(down, "list")
    assert done.returncode == 3, done.stderr
    assert "cannot reach the catalog at postgresql://backfleet:***@127.0.0.1:" in done.stderr
    assert "(DATABASE_URL)" in done.stderr and "Traceback" not in done.stderr
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_wait_gives_up_when_no_worker_consumes_the_queue(env: dict[str, str]) -> None:
    waited = cli(env, "backup", "--wait", timeout=90)
    assert waited.returncode == 3, waited.stdout + waited.stderr
    assert "no worker consumes queue `backup`" in waited.stderr
    # The request itself stands: queued, it runs once a worker starts.
    assert rows(env) == (["Pending"], [])
    assert redis.Redis.from_url(env["BROKER_URL"]).llen("backup") == 1


def test_restore_latest_takes_the_newest_successful_backup(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    nothing = cli(env, "restore", "latest")
    assert nothing.returncode == 1, nothing.stderr
    assert "namespace app has no successful backup to restore" in nothing.stderr
    stamp = a_successful_backup(env, monkeypatch)
    done = cli(env, "restore", "latest")
    assert done.returncode == 0, done.stderr
    assert f"restore of app/{stamp} into app requested" in done.stdout


def test_usage_errors_are_exit_2_and_say_what_a_timestamp_looks_like(
    env: dict[str, str],
) -> None:
    bad = cli(env, "restore", "2026-13-45t99-00-00")
    assert bad.returncode == 2
    assert "is not a real moment" in bad.stderr and "2023-02-02t17-03-15" in bad.stderr
    assert "does not match format" not in bad.stderr  # not strptime's words
    assert cli(env, "no-such-command").returncode == 2
    missing = cli(env, "pin", "2001-01-01t00-00-00")
    assert missing.returncode == 1 and "no backup 2001-01-01t00-00-00" in missing.stderr


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "workers.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    assert done.stdout.startswith("backfleet ") and done.stdout.split()[1][0].isdigit()


def test_every_reporting_command_speaks_json(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    stamp = a_successful_backup(env, monkeypatch)
    dry = json.loads(cli(env, "backup", "--dry-run", "--json").stdout)
    assert [row["service"] for row in dry] == ["files"] and dry[0]["sourceBytes"] > 0
    checks = json.loads(cli(env, "check", "--json").stdout)
    assert {row["name"] for row in checks} >= {"keys", "catalog", "broker", "store", "app/files"}
    verified = cli(env, "verify", "--json")
    assert verified.returncode == 0, verified.stderr
    assert [(row["timestamp"], row["error"]) for row in json.loads(verified.stdout)] == [
        (stamp, None)
    ]
    plans = json.loads(cli(env, "retention", "--dry-run", "--json").stdout)
    assert [plan["namespace"] for plan in plans["primary"]] == ["app"]
    assert list(plans["primary"][0]["keep"]) == [stamp] and plans["secondary"] == []
    queued = cli(env, "backup", "--json")
    assert queued.returncode == 0, queued.stderr
    answer = json.loads(queued.stdout)
    assert answer["status"] == "Pending" and answer["namespace"] == "app"


def test_a_catalog_that_answers_but_is_not_set_up_is_exit_2_saying_what_to_run(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Exit 3 means "try again later": a catalog without its tables never gets better by
    waiting, so a script must not loop on it."""
    empty = {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    done = cli(empty, "list")
    assert done.returncode == 2, done.stderr
    assert "(DATABASE_URL): its tables are missing or behind: run `backfleet migrate`" in (
        done.stderr
    )


def test_a_lock_server_set_apart_that_does_not_answer_is_named_as_such(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding 9: a dead LOCK_REDIS_URL was reported as the broker (BROKER_URL)."""
    a_successful_backup(env, monkeypatch)
    port = free_port()
    down = {**env, "LOCK_REDIS_URL": f"redis://:{SECRET}@127.0.0.1:{port}/0"}
    done = cli(down, "retention")
    assert done.returncode == 3, done.stderr
    assert f"the lock server at redis://:***@127.0.0.1:{port}/0 (LOCK_REDIS_URL)" in done.stderr
    assert "BROKER_URL" not in done.stderr and SECRET not in done.stdout + done.stderr


def test_a_store_that_does_not_answer_is_exit_3_naming_its_setting(env: dict[str, str]) -> None:
    """Review finding 9: an unreachable store was exit 1 ("look at the backup"), not 3."""
    down = {
        **env,
        "OBJECT_STORE_LOCATION_TYPE": "s3",
        "AWS_S3_BUCKET": "backups",
        "AWS_S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_MAX_ATTEMPTS": "1",
    }
    done = cli(down, "store", "init")
    assert done.returncode == 3, done.stderr
    assert "cannot connect to http://127.0.0.1:" in done.stderr
    assert "(AWS_S3_ENDPOINT_URL" in done.stderr and SECRET not in done.stdout + done.stderr

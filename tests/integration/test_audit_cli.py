"""`backfleet audit flush|purge|export` as an operator runs them (a local store, SQLite)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.audit_events import DAY_MS, T0, insert, make_events
from workers.catalog.db import dispose_engines
from workers.catalog.migrate import upgrade_catalog

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", "audit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_flush_export_purge(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/catalog.db"
    upgrade_catalog(url)
    insert(url, make_events(30, step_ms=DAY_MS // 10))  # three days
    dispose_engines()
    config = tmp_path / "backfleet.toml"
    config.write_text(f'namespace = "app"\n[services.f]\nkind = "directory"\npath = "{tmp_path}"\n')
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "BACKFLEET_CONFIG": str(config),
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp_path / "store"),
        "ENABLE_USER_EVENTS": "true",
        "UEVENTS_BATCH_EVENTS": "8",
    }

    flushed = cli(env, "flush")
    assert flushed.returncode == 0, flushed.stderr
    assert flushed.stdout.strip().startswith("shipped 30 event(s) in 4 batch(es)")

    exported = cli(env, "export", "--since", "2023-11-15", "--until", "2023-11-16T12:00")
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    low, high = 1_700_006_400_000, 1_700_136_000_000  # 2023-11-15T00:00Z, 2023-11-16T12:00Z
    expected = [n for n in range(30) if low <= T0 + n * (DAY_MS // 10) < high]
    assert [int(line["requestParams"]["n"]) for line in lines] == expected

    bad = cli(env, "export", "--since", "last tuesday")
    assert bad.returncode == 2 and "is not a date or time" in bad.stderr

    purged = cli(env, "purge")  # the events are from 2023: older than 30 days, and shipped
    assert purged.returncode == 0 and purged.stdout.strip() == "purged 30 shipped event(s)"


def test_the_celery_tasks_flush_and_purge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.audit import flush_user_events, purge_user_events
    from workers.fleet import reset_fleet

    url = f"sqlite:///{tmp_path}/catalog.db"
    upgrade_catalog(url)
    insert(url, make_events(25))
    config = tmp_path / "backfleet.toml"
    config.write_text(f'namespace = "app"\n[services.f]\nkind = "directory"\npath = "{tmp_path}"\n')
    for name, value in {
        "DATABASE_URL": url,
        "BACKFLEET_CONFIG": str(config),
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp_path / "store"),
        "ENABLE_USER_EVENTS": "true",
        "UEVENTS_BATCH_EVENTS": "10",
        "UEVENTS_RETENTION_DAYS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    reset_fleet()
    try:
        assert flush_user_events.run() == {"events": 25, "batches": 3, "objects": 3}
        assert purge_user_events.run() == {"deleted": 25}  # from 2023: past one day
        assert flush_user_events.run() == {"events": 0, "batches": 0, "objects": 0}
    finally:
        reset_fleet()
        dispose_engines()

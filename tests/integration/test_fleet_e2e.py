"""The whole path as a user drives it: HTTP API -> Redis -> a real Celery worker -> store -> back.

A real worker process (not eager mode) on a private Redis, the API served by
uvicorn, a real PostgreSQL database, a SQLite database and a directory.
"""

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest

from tests.fleet_processes import FleetProcesses, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEY = "e2e-key-5f1c"
AUTH = {"Authorization": KEY}
API = "/athena/api/v1"


@dataclass
class Fleet:
    api: httpx2.Client
    env: dict[str, str]
    pg_url: str
    sqlite_path: Path
    directory: Path
    store: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "workers.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def wait_status(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + 90
        seen = []
        while time.monotonic() < deadline:
            body = self.api.get(path, params=params).json()
            seen.append(body.get("status"))
            if body.get("status") in ("Success", "Failed"):
                body["seen"] = seen
                return body
            time.sleep(0.2)
        raise AssertionError(f"{path} never finished; statuses seen: {seen[-5:]}")


def make_demo_data(pg_url: str, sqlite_path: Path, directory: Path) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE projects (id int PRIMARY KEY, name text);"
            "INSERT INTO projects SELECT g, 'project ' || g FROM generate_series(1, 300) g;"
        )
    with sqlite3.connect(sqlite_path) as db:
        db.execute("CREATE TABLE nodes (id INTEGER PRIMARY KEY, label TEXT)")
        db.executemany("INSERT INTO nodes (label) VALUES (?)", [(f"n{i}",) for i in range(500)])
    (directory / "repos" / "empty").mkdir(parents=True)
    (directory / "repos" / "main.git").write_bytes(os.urandom(200_000))
    (directory / "settings.yaml").write_text("replicas: 3\n")
    os.symlink("settings.yaml", directory / "link")


def snapshot_tree(root: Path) -> dict[str, tuple[str, int, bytes]]:
    tree = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            tree[rel] = ("link", 0, os.readlink(path).encode())
        elif path.is_dir():
            tree[rel] = ("dir", path.stat().st_mode, b"")
        else:
            tree[rel] = ("file", path.stat().st_mode, path.read_bytes())
    return tree


@pytest.fixture(params=["sqlite-catalog", "postgres-catalog"])
def fleet(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: Any, pg_database: str
) -> Iterator[Fleet]:
    sqlite_path, directory, store = tmp_path / "graph.db", tmp_path / "git", tmp_path / "store"
    directory.mkdir()
    make_demo_data(pg_database, sqlite_path, directory)
    config = tmp_path / "backfleet.toml"
    config.write_text(
        'namespace = "app"\n'
        f'[services.postgres]\nkind = "postgres"\nurl = "{pg_database}"\n'
        f'[services.metagraph]\nkind = "sqlite"\npath = "{sqlite_path}"\n'
        f'[services.gitserver]\nkind = "directory"\npath = "{directory}"\nconfig = true\n'
    )
    if extra := request.node.get_closest_marker("fleet_config"):  # e.g. a [retention] table
        config.write_text(config.read_text() + extra.args[0])
    if request.param == "sqlite-catalog":
        catalog = f"sqlite:///{tmp_path}/catalog.db"
    else:
        catalog = request.getfixturevalue("postgres_server").create_database()
    port = free_port()
    env = {
        **os.environ,
        "BROKER_URL": redis_server.url,
        "DATABASE_URL": catalog,
        "BACKFLEET_CONFIG": str(config),
        "OBJECT_STORE_LOCATION_LOCAL": str(store),
        "BACKFLEET_API_KEYS": f"{KEY}:qa@example.com:acme",
        "BACKFLEET_API_PORT": str(port),
    }
    for name in ("REDIS_URL", "BACKFLEET_NAMESPACE", "ENABLE_REGULAR_BACKUPS"):
        env.pop(name, None)
    processes = FleetProcesses(env, tmp_path / "logs")
    try:
        processes.prepare()
        processes.worker(f"e2e-{port}")
        processes.api(port)
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=10) as client:
            yield Fleet(client, env, pg_database, sqlite_path, directory, store)
    finally:
        processes.close()


def test_backup_and_restore_through_the_api(fleet: Fleet) -> None:
    original_tree = snapshot_tree(fleet.directory)

    assert fleet.api.get(f"{API}/backup/latest").status_code == 404
    assert (
        fleet.api.post(f"{API}/ondemandbackup", json={}, headers={"Authorization": "x"}).status_code
        == 401
    )

    answer = fleet.api.post(f"{API}/ondemandbackup", json={})
    assert answer.status_code == 202, answer.text
    message = answer.json()["message"]
    assert answer.json()["code"] == 202 and message.startswith("Request Accepted with timestamp ")
    timestamp = message.rsplit(" ", 1)[1]

    latest = fleet.wait_status(f"{API}/backup/latest")
    assert latest["status"] == "Success", latest
    assert latest["timestamp"] == timestamp and latest["namespace"] == "app"
    assert latest["backupurl"] == f"file://{fleet.store}/app/{timestamp}/"
    assert set(latest["seen"]) <= {"Pending", "Running", "Success"}
    manifest = json.loads((fleet.store / "app" / timestamp / "manifest.json").read_text())
    assert sorted(a["service"] for a in manifest["artifacts"]) == [
        "gitserver",
        "metagraph",
        "postgres",
    ]
    postgres_entry = next(a for a in manifest["artifacts"] if a["service"] == "postgres")
    assert postgres_entry["source"]["row_counts"] == {"public.projects": 300}
    assert "@" not in json.dumps(manifest)  # no connection string, let alone a password

    # Everything changes after the backup...
    with psycopg.connect(fleet.pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM projects WHERE id > 5; CREATE TABLE intruder (x int)")
    with sqlite3.connect(fleet.sqlite_path) as db:
        db.execute("DELETE FROM nodes")
    (fleet.directory / "settings.yaml").write_text("replicas: 0\n")
    (fleet.directory / "new-file").write_text("after the backup")

    # ...then a restore that leaves the git server alone.
    answer = fleet.api.post(
        f"{API}/ondemandrestore",
        json={
            "timestamp": timestamp,
            "sourceNamespace": "app",
            "svcs": {
                "gitserver": {"disable": True},
                "metagraph": {"disable": False},
                "postgres": {"disable": False},
            },
        },
    )
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"code": 202, "message": "Request Accepted", "timestamp": timestamp}
    status = fleet.wait_status(f"{API}/restorestatus", {"timestamp": timestamp})
    assert status["status"] == "Success", status
    assert status["namespace"] == "app" and status["backupurl"] == latest["backupurl"]

    with psycopg.connect(fleet.pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM projects").fetchone() == (300,)
        assert conn.execute("SELECT to_regclass('public.intruder')").fetchone() == (None,)
    with sqlite3.connect(fleet.sqlite_path) as db:
        assert db.execute("SELECT count(*) FROM nodes").fetchone() == (500,)
    assert (fleet.directory / "new-file").exists()  # disabled: untouched

    # A full restore brings the directory back exactly.
    assert (
        fleet.api.post(f"{API}/ondemandrestore", json={"timestamp": timestamp}).status_code == 202
    )
    deadline = time.monotonic() + 90
    while (
        fleet.api.get(f"{API}/restorestatus", params={"timestamp": timestamp}).json()["status"]
        not in ("Success", "Failed")
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    final = fleet.api.get(f"{API}/restorestatus", params={"timestamp": timestamp}).json()
    assert final["status"] == "Success", final
    assert snapshot_tree(fleet.directory) == original_tree

    # Unknown backups are refused at once, and nothing is queued for them.
    missing = fleet.api.post(f"{API}/ondemandrestore", json={"timestamp": "2001-01-01t00-00-00"})
    assert missing.status_code == 404 and "message" in missing.json()


def test_only_config_backup_and_the_cli(fleet: Fleet) -> None:
    answer = fleet.api.post(f"{API}/ondemandbackup", json={"onlyConfig": True})
    assert answer.status_code == 202, answer.text
    latest = fleet.wait_status(f"{API}/backup/latest")
    assert latest["status"] == "Success", latest
    manifest = json.loads((fleet.store / "app" / latest["timestamp"] / "manifest.json").read_text())
    assert [a["service"] for a in manifest["artifacts"]] == ["gitserver"]
    assert manifest["only_config"] is True

    waited = fleet.cli("backup", "--wait")
    assert waited.returncode == 0, waited.stderr
    assert "Success" in waited.stdout
    listed = json.loads(fleet.cli("list", "--json").stdout)
    assert [row["status"] for row in listed] == ["Success", "Success"]
    assert listed[1]["onlyConfig"] is True and listed[0]["trigger"] == "cli"

    restored = fleet.cli("restore", listed[0]["timestamp"], "--skip", "postgres", "--wait")
    assert restored.returncode == 0, restored.stderr + restored.stdout
    bad = fleet.cli("restore", "yesterday")
    assert bad.returncode == 2 and "2023-02-02t17-03-15" in bad.stderr

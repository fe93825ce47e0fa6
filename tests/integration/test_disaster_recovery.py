"""docs/runbook.md, section 1, for real: a standby fleet whose catalog never saw the backup
restores the primary's backup from the store alone.

Two fleets share one object store and nothing else: each has its own catalog, its own Redis
database, its own worker and its own PostgreSQL database and directory to restore into.
"""

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fleet_processes import FleetProcesses

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SIGNING_KEY = "dr-test-signing-key-" + "0123456789abcdef" * 2


class Fleet:
    def __init__(self, name: str, root: Path, redis_url: str, store: Path, pg_url: str) -> None:
        self.name = name
        self.directory = root / name / "files"
        self.pg_url = pg_url
        config = root / name / "backfleet.toml"
        config.parent.mkdir(parents=True)
        config.write_text(
            'namespace = "app"\n'
            f'[services.postgres]\nkind = "postgres"\nurl = "{pg_url}"\n'
            f'[services.files]\nkind = "directory"\npath = "{self.directory}"\n'
        )
        env = {
            **os.environ,
            "BROKER_URL": redis_url,
            "DATABASE_URL": f"sqlite:///{root / name / 'catalog.db'}",
            "BACKFLEET_CONFIG": str(config),
            "OBJECT_STORE_LOCATION_LOCAL": str(store),
            # Shared by both regions: the standby accepts only manifests it can authenticate.
            "BACKUP_SIGNING_KEY": SIGNING_KEY,
        }
        for variable in ("REDIS_URL", "BACKFLEET_NAMESPACE", "ENABLE_REGULAR_BACKUPS"):
            env.pop(variable, None)
        self.processes = FleetProcesses(env, root / name / "logs")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.processes.cli(*args, timeout=120)

    def log(self) -> str:
        return self.processes.log_of(self.name)

    def start(self) -> None:
        self.processes.prepare()
        self.processes.worker(self.name, queues="backup,restore")

    def stop(self) -> None:
        self.processes.close()


@pytest.fixture
def fleets(
    tmp_path: Path, redis_server: Any, postgres_server: Any
) -> Iterator[tuple[Fleet, Fleet]]:
    store = tmp_path / "store"  # the only thing the two regions share
    base = redis_server.url.rsplit("/", 1)[0]
    names = [f"test_dr_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    urls = [postgres_server.create_database(name) for name in names]
    primary = Fleet("primary", tmp_path, f"{base}/5", store, urls[0])
    standby = Fleet("standby", tmp_path, f"{base}/6", store, urls[1])
    try:
        yield primary, standby
    finally:
        primary.stop()
        standby.stop()
        for name in names:
            postgres_server.drop_database(name)


def test_a_standby_with_an_empty_catalog_restores_the_primarys_backup(
    fleets: tuple[Fleet, Fleet],
) -> None:
    primary, standby = fleets
    with psycopg.connect(primary.pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE orders (id int PRIMARY KEY, note text);"
            "INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 5000) g;"
        )
    (primary.directory / "repos").mkdir(parents=True)
    (primary.directory / "repos" / "main.git").write_bytes(os.urandom(300_000))
    (primary.directory / "settings.yaml").write_text("replicas: 3\n")

    primary.start()
    backed_up = primary.cli("backup", "--wait")
    assert backed_up.returncode == 0, backed_up.stderr + primary.log()
    timestamp = backed_up.stdout.split()[1]
    primary.stop()  # the primary region is gone

    standby.start()
    assert json.loads(standby.cli("list", "--json").stdout) == []  # never saw the backup
    started = time.monotonic()
    restored = standby.cli("restore", timestamp, "--source-namespace", "app", "--wait")
    seconds = time.monotonic() - started
    assert restored.returncode == 0, restored.stderr + restored.stdout + standby.log()

    with psycopg.connect(standby.pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (5000,)
    assert (standby.directory / "settings.yaml").read_text() == "replicas: 3\n"
    assert (standby.directory / "repos" / "main.git").read_bytes() == (
        primary.directory / "repos" / "main.git"
    ).read_bytes()
    print(f"standby restore of {timestamp}: {seconds:.1f} s end to end")

"""`backfleet backup [--wait]` as a light process (issue 18: the Celery path users run):
it writes its Pending row through the catalog's driver, sends its task with kombu and
waits on the result backend's pub/sub, loading neither SQLAlchemy, nor Celery, nor rich
without a terminal; and it says what it said before when the catalog is not set up or
does not answer.

Against a real Redis and a SQLite catalog; the worker's part is played by a script that
does what a worker does to the two (the Success row, then the stored and published
result), so the wait is heard through the same keys.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from workers.catalog.db import dispose_engines
from workers.catalog.migrate import upgrade_catalog
from workers.cli.embedded_redis import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
HEAVY = {"sqlalchemy", "celery", "rich", "boto3", "psycopg"}
sys.argv = ["backfleet", *sys.argv[1:]]
from workers.cli import main
try:
    main()
except SystemExit as stop:
    code = stop.code
loaded = sorted({m.split(".")[0] for m in sys.modules} & HEAVY)
print(json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""
# A worker's two writes when a backup ends: the catalog row, then the task's result
# (celery.backends.redis: SET and PUBLISH of celery-task-meta-<id> in one MULTI).
WORKER = """
import json, sqlite3, sys, time
import redis
catalog, url = sys.argv[1], sys.argv[2]
results = redis.Redis.from_url(url)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    with sqlite3.connect(catalog) as db:
        row = db.execute(
            "SELECT id, task_id FROM backups WHERE status = 'Pending' AND task_id IS NOT NULL"
        ).fetchone()
        if row:
            db.execute("UPDATE backups SET status = 'Success' WHERE id = ?", (row[0],))
    if row:
        key = "celery-task-meta-" + row[1]
        meta = json.dumps({"status": "SUCCESS", "result": None, "task_id": row[1]})
        results.pipeline().set(key, meta).publish(key, meta).execute()
        break
    time.sleep(0.05)
"""


@pytest.fixture
def env(tmp_path: Path, redis_server: Any) -> dict[str, str]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("hello\n")
    services = tmp_path / "backfleet.toml"
    services.write_text(f'[services.files]\nkind = "directory"\npath = "{data}"\n')
    redis.Redis.from_url(redis_server.url).flushdb()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_"))},
        "PYTHONPATH": str(ROOT),
        "BROKER_URL": str(redis_server.url),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}",
        "BACKFLEET_CONFIG": str(services),
        "OBJECT_STORE_LOCATION_TYPE": "local",
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp_path / "store"),
    }
    upgrade_catalog(environment["DATABASE_URL"])
    dispose_engines()
    return environment


def probe(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    facts = json.loads(done.stderr.strip().splitlines()[-1])
    return done, facts


def test_backup_wait_loads_no_orm_celery_or_rich_and_hears_the_end(
    env: dict[str, str], tmp_path: Path
) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path / "catalog.db"), env["BROKER_URL"]],
        env=env,
    )
    try:
        done, facts = probe(env, "backup", "--wait")
    finally:
        worker.wait(timeout=90)
    assert facts == {"code": 0, "loaded": []}, done.stderr[-2000:]
    requested, blank, ended = done.stdout.split("\n")[:3]
    assert requested.startswith("backup ") and requested.endswith(" of namespace app requested")
    stamp = requested.split()[1]
    # What rich's transient bar leaves where it cannot draw: one empty line.
    assert (blank, ended) == ("", f"backup {stamp}: Success")
    # The message waits in the queue a worker consumes (the script above takes none).
    assert redis.Redis.from_url(env["BROKER_URL"]).llen("backup") == 1


def test_backup_json_says_pending_and_loads_nothing_heavy(env: dict[str, str]) -> None:
    done, facts = probe(env, "backup", "--json")
    assert facts == {"code": 0, "loaded": []}, done.stderr[-2000:]
    answer = json.loads(done.stdout)
    assert (answer["namespace"], answer["status"], answer["error"]) == ("app", "Pending", None)


def test_a_catalog_without_tables_or_not_answering_keeps_its_exit_code(
    env: dict[str, str], tmp_path: Path
) -> None:
    empty = {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "workers.cli", "backup"],
        env=empty,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "(DATABASE_URL): its tables are missing or behind: run `backfleet migrate`" in (
        done.stderr
    )
    secret = "s3cret-Pass-9"
    down = {**env, "DATABASE_URL": f"postgresql://backfleet:{secret}@127.0.0.1:{free_port()}/x"}
    done = subprocess.run(
        [sys.executable, "-m", "workers.cli", "backup", "--wait"],
        env=down,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert "cannot reach the catalog at postgresql://backfleet:***@127.0.0.1:" in done.stderr
    assert "(DATABASE_URL)" in done.stderr and "Traceback" not in done.stderr
    assert secret not in done.stdout + done.stderr

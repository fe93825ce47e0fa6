"""A worker process loads only what its configuration uses (issue 18: worker memory).

The Celery parent imports every task module before it forks its pool; each package
it loads costs every worker process its memory. With a SQLite catalog and no
PostgreSQL source nothing needs psycopg (~8 MiB), ISA-L is for the audit flush
(and the S3 store, loaded with it), and the manifest MAC's HKDF is the standard
library's, not the `cryptography` package's (~6 MiB).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_LOADED = ("psycopg", "psycopg_binary", "isal", "cryptography.hazmat", "boto3", "azure")

PROBE = """
import json, sys
import tasks.app
for name in tasks.app.app.conf.include:  # what `celery worker` imports before it forks
    __import__(name)
from workers.repository.manifest_mac import MacKeys
from workers.settings import get_settings
MacKeys.from_settings(get_settings())  # a signing key is set: its HKDF runs
print(json.dumps(sorted(m for m in sys.modules if m.startswith(tuple(sys.argv[1:])))))
"""


@pytest.mark.timeout(120)
def test_a_worker_with_a_sqlite_catalog_loads_no_psycopg_isal_or_cryptography(
    tmp_path: Path,
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_"))},
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}",
        "OBJECT_STORE_LOCATION_TYPE": "local",
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp_path / "store"),
        "BACKUP_SIGNING_KEY": "k" * 40,
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *NOT_LOADED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_app_leaves_the_schedule_to_beat(tmp_path: Path) -> None:
    """Every CLI request, API and worker imports tasks.app; only beat reads the schedule."""
    probe = (
        "import sys, tasks.app; "
        "print(tasks.app.app.conf.beat_schedule, 'beat_schedule' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite:///{tmp_path}/c.db"}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["{}", "False"]


WARM = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from workers.fleet import warm_up
warm_up()  # what each pool process does at worker_process_init (tasks/app.py)
print(json.dumps(sorted(m for m in ("boto3", "workers.sources.directory") if m in sys.modules)))
"""


def test_a_pool_process_loads_its_store_sdk_and_source_kinds_before_its_first_task(
    tmp_path: Path,
) -> None:
    services = tmp_path / "backfleet.toml"
    services.write_text(f'[services.files]\nkind = "directory"\npath = "{tmp_path}"\n')
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}",
        "BACKFLEET_CONFIG": str(services),
        "OBJECT_STORE_LOCATION_TYPE": "s3",
        "AWS_S3_BUCKET_NAME": "bucket",
        "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-c", WARM], cwd=ROOT, env=env, capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [
        "boto3",
        "workers.sources.directory",
    ]


def test_a_fleet_that_cannot_be_built_is_left_to_the_first_task_without_its_secrets(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": "postgresql://backfleet:hunter2-secret@127.0.0.1:1/x",
        "BACKFLEET_CONFIG": str(tmp_path / "missing.toml"),
    }
    done = subprocess.run(
        [sys.executable, "-c", WARM], cwd=ROOT, env=env, capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "could not prepare this worker process" in done.stderr
    assert "hunter2-secret" not in done.stderr + done.stdout


def test_queueing_a_backup_to_s3_loads_no_sdk(tmp_path: Path) -> None:
    """The CLI and the API build the fleet (its store included) to queue a request; the S3
    adapter loads boto3 only when it first talks to the store (~0.2 s a command)."""
    services = tmp_path / "backfleet.toml"
    services.write_text(f'[services.files]\nkind = "directory"\npath = "{tmp_path}"\n')
    probe = (
        "import json, sys\n"
        "import tasks.app, tasks.enqueue, workers.cli.commands, workers.operations.jobs\n"
        "from workers.fleet import current_fleet\n"
        "fleet = current_fleet()\n"
        "assert type(fleet.store).__name__ == 'S3Store', fleet.store\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('boto3', 'botocore')))))\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_"))},
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}",
        "BACKFLEET_CONFIG": str(services),
        "OBJECT_STORE_LOCATION_TYPE": "s3",
        "AWS_S3_BUCKET_NAME": "backups",
        "AWS_ACCESS_KEY": "access",
        "AWS_SECRET_KEY": "secret",
    }
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []

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

"""A worker loads the SDK of the store it writes to, and no other (start-up time, memory).

The store registry imports an adapter module only when its store is chosen: a backup to
the local store runs without boto3 or the Azure SDK in the process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def sdks_loaded_by_a_backup(tmp_path: Path, env: dict[str, str]) -> list[str]:
    """The store SDKs a fresh process holds after one real backup (tests/lazy_sdk_probe.py)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("alpha\n")
    services = tmp_path / "services.toml"
    services.write_text(
        f'namespace = "app"\n[services.files]\nkind = "directory"\npath = "{data}"\n'
    )
    child = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_"))},
        "PYTHONPATH": str(ROOT),
        "BACKFLEET_CONFIG": str(services),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}",
        "BACKFLEET_WORK_DIR": str(tmp_path),
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.lazy_sdk_probe"],
        cwd=ROOT,
        env=child,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.timeout(150)
def test_a_backup_to_the_local_store_loads_neither_boto3_nor_the_azure_sdk(
    tmp_path: Path,
) -> None:
    env = {
        "OBJECT_STORE_LOCATION_TYPE": "local",
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp_path / "store"),
    }
    assert sdks_loaded_by_a_backup(tmp_path, env) == []

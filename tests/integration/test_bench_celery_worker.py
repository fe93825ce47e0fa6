"""bench/celery_worker.py end to end: `backfleet backup --wait` through a worker (prefork,
and the one-process threads worker) to a real S3 server, its time and memory read."""

import os
import subprocess
from pathlib import Path

import pytest

from bench.celery_worker import CeleryFleet, sampling
from tests.plugins.object_stores import S3Server


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_worker_backs_up_and_its_memory_is_read(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str, pool: str
) -> None:
    source = tmp_path / "files"
    source.mkdir()
    (source / "big.bin").write_bytes(os.urandom(3 * 2**20))
    (source / "small.txt").write_text("hello")
    store_env = {
        **os.environ,
        "OBJECT_STORE_LOCATION_TYPE": "s3",
        "AWS_S3_ENDPOINT_URL": s3_server.endpoint,
        "AWS_ACCESS_KEY": s3_server.access_key,
        "AWS_SECRET_KEY": s3_server.secret_key,
        "AWS_S3_BUCKET_NAME": s3_bucket,
        "AWS_S3_REGION": "us-west-2",
        "AWS_S3_ADDRESSING_STYLE": "path",
    }

    with CeleryFleet(source, store_env, pool=pool) as fleet:
        folder = fleet.folder
        idle = fleet.memory()
        with sampling(fleet) as sampler:
            done = subprocess.run(
                fleet.cli_command("backup", "--wait"), env=fleet.env, capture_output=True
            )
        assert done.returncode == 0, done.stdout[-2000:] + fleet.worker_log_tail().encode()
        backup = fleet.last_backup()
        after = fleet.memory()
        # A script's backup through the API, against the same fleet.
        script = subprocess.run(fleet.api_command(), env=fleet.api_env, capture_output=True)
        assert script.returncode == 0, script.stderr[-2000:]
        assert script.stdout.decode().endswith(" Success\n")
        assert fleet.last_backup()["status"] == "Success"

    assert backup["status"] == "Success" and backup["queue_s"] > 0
    assert idle["child_rss"] > 0
    assert 0 < sampler.peak_child["Private"] <= sampler.peak_child["Pss"]
    if pool == "prefork":
        assert idle["parent_rss"] > 0
        assert sampler.peak_child["Pss"] < sampler.peak_tree_pss
    else:  # one process: the task process is the whole worker
        assert idle["parent_rss"] == 0
        assert sampler.peak_child["Pss"] == sampler.peak_tree_pss
    assert after["child_peak_rss"] >= sampler.peak_child["Pss"] * 1024
    listed = s3_server.client().list_objects_v2(Bucket=s3_bucket).get("Contents", [])
    keys = [item["Key"] for item in listed]
    assert any(key.startswith("bench/") and "/files." in key for key in keys), keys
    assert not folder.exists()  # the broker, the catalog and the logs are gone

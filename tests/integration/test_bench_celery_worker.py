"""bench/celery_worker.py end to end: a prefork worker backs up a folder to a real S3 server."""

import os
from pathlib import Path

import pytest

from bench.celery_worker import measure_worker_backup
from tests.plugins.object_stores import S3Server


@pytest.mark.slow
def test_a_prefork_worker_backs_up_and_its_memory_is_read(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
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

    outcome = measure_worker_backup(
        source, store_env=store_env, input_bytes=3 * 2**20 + 5, timeout=120
    )

    assert outcome["ok"], outcome.get("error")
    assert 0 < outcome["child_idle_private"] <= outcome["child_peak_private"]
    assert outcome["child_peak_private"] <= outcome["child_peak_pss"] <= outcome["child_peak_rss"]
    assert outcome["parent_rss"] > 0 and outcome["wall_s"] > 0
    listed = s3_server.client().list_objects_v2(Bucket=s3_bucket).get("Contents", [])
    keys = [item["Key"] for item in listed]
    assert any(key.startswith("bench/") and "/files." in key for key in keys), keys
    assert not list((Path(__file__).parents[2] / "bench" / "out").glob("celery-worker-*"))

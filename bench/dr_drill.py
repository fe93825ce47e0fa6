"""A timed disaster-recovery drill of the benchmark database (docs/runbook.md, section 1).

    .venv/bin/python -m bench.dr_drill [--url postgresql://postgres@127.0.0.1:5432/postgres]

A primary fleet (its own catalog and Redis database, one worker) backs
`backfleet_bench` up to a local S3 server (`rclone serve s3`) and stops. A warm
standby fleet — a catalog that has never seen the backup, another Redis
database, its own worker — then restores it from the store alone, with the
runbook's command, into the empty database `backfleet_bench_dr`, which is
checked table by table against the row counts in the manifest and dropped.
Prints the times as a Markdown table. Everything runs on 127.0.0.1.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.datagen import DB_NAME, DEFAULT_PG_URL, ensure_database
from bench.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from workers.cli.embedded_redis import start_embedded_redis, stop_embedded_redis

TARGET_DB = f"{DB_NAME}_dr"
NAMESPACE = "bench"
BUCKET = "dr-drill"


def db_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


class Fleet:
    """One region's Backfleet: settings, a services file, a worker."""

    def __init__(self, name: str, state: Path, redis_url: str, s3: S3Server, pg_url: str) -> None:
        self.name = name
        root = state / name
        root.mkdir(parents=True)
        config = root / "backfleet.toml"
        config.write_text(
            f'namespace = "{NAMESPACE}"\n[services.db]\nkind = "postgres"\nurl = "{pg_url}"\n'
        )
        self.env = {
            **os.environ,
            "BROKER_URL": redis_url,
            "DATABASE_URL": f"sqlite:///{root / 'catalog.db'}",
            "BACKFLEET_CONFIG": str(config),
            "BACKFLEET_WORK_DIR": str(root),
            "OBJECT_STORE_LOCATION_TYPE": "s3",
            "AWS_S3_ENDPOINT_URL": s3.endpoint,
            "AWS_S3_ADDRESSING_STYLE": "path",
            "AWS_S3_REGION": REGION,
            "AWS_S3_BUCKET_NAME": BUCKET,
            "AWS_ACCESS_KEY": ACCESS_KEY,
            "AWS_SECRET_KEY": SECRET_KEY,
        }
        for variable in ("REDIS_URL", "BACKFLEET_NAMESPACE", "ENABLE_REGULAR_BACKUPS"):
            self.env.pop(variable, None)
        self.node = f"{name}-{uuid.uuid4().hex[:6]}@drill"
        self.log = root / "worker.log"
        self.worker: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "workers.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{self.name}: backfleet {' '.join(args)}: {result.stderr}")
        return result.stdout

    def start(self) -> None:
        self.cli("migrate")
        self.cli("store", "init")
        with open(self.log, "wb") as log:
            self.worker = subprocess.Popen(
                [
                    *(sys.executable, "-m", "workers.cli", "worker", "--queues", "backup,restore"),
                    *("--concurrency", "1", "--without-gossip", "--without-mingle"),
                    *("-n", self.node),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        probe = [sys.executable, "-m", "workers.cli.healthcheck", "worker", "-n", self.node]
        deadline = time.monotonic() + 120
        while subprocess.run(probe, env=self.env, capture_output=True, check=False).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}'s worker did not start; see {self.log}")
            time.sleep(1)

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(60)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()


def row_counts(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
        return {
            name: int(conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0])  # type: ignore[index]
            for (name,) in tables
        }


def drill(admin_url: str, state: Path) -> dict[str, Any]:
    import psycopg

    facts = ensure_database(admin_url)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {TARGET_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {TARGET_DB}")
    redis_process, redis_url = start_embedded_redis(state / "redis")
    base = redis_url.rsplit("/", 1)[0]
    results: dict[str, Any] = {"database": facts}
    try:
        with S3Server(state / "s3") as s3:
            primary = Fleet("primary", state, f"{base}/1", s3, db_url(admin_url, DB_NAME))
            primary.start()
            started = time.monotonic()
            out = primary.cli("backup", "--wait")
            results["backup_s"] = time.monotonic() - started
            timestamp = out.split()[1]
            primary.stop()  # the primary region is gone

            standby = Fleet("standby", state, f"{base}/2", s3, db_url(admin_url, TARGET_DB))
            started = time.monotonic()
            standby.start()
            results["standby_start_s"] = time.monotonic() - started
            assert json.loads(standby.cli("list", "--json")) == []  # never saw the backup
            started = time.monotonic()
            standby.cli("restore", timestamp, "--source-namespace", NAMESPACE, "--wait")
            results["restore_s"] = time.monotonic() - started
            standby.stop()

            manifest_key = f"{NAMESPACE}/{timestamp}/manifest.json"
            body = s3.client().get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read()
            manifest = json.loads(body)
            (entry,) = manifest["artifacts"]
            results["stored_bytes"] = entry["size"]
            expected = entry["source"]["row_counts"]
            restored = row_counts(db_url(admin_url, TARGET_DB))
            if restored != expected:
                raise RuntimeError(f"row counts differ: {restored} != {expected}")
            results["row_counts"] = restored
            results["timestamp"] = timestamp
    finally:
        stop_embedded_redis(redis_process)
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {TARGET_DB} WITH (FORCE)")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG_URL))
    args = parser.parse_args(argv)
    state = Path(tempfile.mkdtemp(prefix="backfleet-dr-drill-"))
    try:
        results = drill(args.url, state)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    rows = sum(results["row_counts"].values())
    print("| step | seconds |\n|---|---|")
    print(f"| primary: `backfleet backup --wait` | {results['backup_s']:.1f} |")
    print(f"| standby: migrate, store check, worker ready | {results['standby_start_s']:.1f} |")
    print(
        f"| standby: `backfleet restore {results['timestamp']} --source-namespace {NAMESPACE} "
        f"--wait` | {results['restore_s']:.1f} |"
    )
    print(
        f"\n{DB_NAME}: {results['database']}; stored {results['stored_bytes'] / 1e6:.0f} MB; "
        f"{rows:,} rows restored, every table's count equal to the manifest's"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

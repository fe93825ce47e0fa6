"""The fleet under faults, with real processes: workers killed, Redis restarted, the
catalog gone for 10 s, two beats, and a burst of requests over many namespaces.

Each test starts its own Redis (append-only, as in production) so a restart
disturbs nothing else; the S3 server and Azurite are the session's. The
reliability settings are shortened (visibility timeout 30 s, lock TTL 5 s) so
every test ends within a couple of minutes; each is bounded by its timeout.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx2
import pytest
import redis
from sqlalchemy import func, select

from tests.fleet_processes import FleetProcesses, free_port, stop, wait_for
from tests.integration.test_resume_after_kill import store_env
from tests.servers import RedisServer, started
from tests.tcpgate import TcpGate
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import SUCCESS, Backup, UploadPart
from workers.repository.manifest import Manifest, manifest_key
from workers.settings import Settings
from workers.stores import make_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MiB = 1024 * 1024
KEY = "faults-key-9d2e"
LOCK = "backfleet:redbeat:lock"  # RedBeat's lock key under Backfleet's prefix

# Short enough for a test, in the same relations as the defaults.
RELIABILITY = {
    "CELERY_VISIBILITY_TIMEOUT": "30",
    "BACKUP_SOFT_TIME_LIMIT": "22",
    "BACKUP_TIME_LIMIT": "26",
    "BACKUP_LOCK_TTL": "5",
    "SCHEDULED_BACKUP_WAIT": "10",
    "BEAT_LOCK_TIMEOUT": "6",
    "TASK_MAX_REDELIVERIES": "3",
    "BACKUP_PART_SIZE": str(5 * 1024 * 1024),
    "BACKUP_RETRY_BASE_DELAY": "0.2",
}


@dataclass
class Rig:
    fleet: FleetProcesses
    env: dict[str, str]
    catalog: str
    redis: RedisServer
    data: Path

    def backups(self, namespace: str = "app") -> list[Backup]:
        with session_scope(self.catalog) as session:
            query = select(Backup).where(Backup.namespace == namespace)
            return list(session.scalars(query).all())

    def parts_recorded(self) -> int:
        with session_scope(self.catalog) as session:
            return int(session.scalar(select(func.count()).select_from(UploadPart)) or 0)

    def finished(self, namespace: str = "app") -> Backup | None:
        rows = self.backups(namespace)
        return rows[0] if len(rows) == 1 and rows[0].status in ("Success", "Failed") else None


def write_blobs(directory: Path, count: int, size: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):  # random bytes: zstd cannot shrink them, so parts stay 5 MiB
        (directory / f"blob-{index}.bin").write_bytes(os.urandom(size))


@contextmanager
def make_rig(
    tmp_path: Path, store: dict[str, str], catalog: str, extra: dict[str, str] | None = None
) -> Iterator[Rig]:
    data = tmp_path / "data"
    write_blobs(data, 4, 6 * MiB)
    config = tmp_path / "backfleet.toml"
    config.write_text(f'namespace = "app"\n[services.files]\nkind = "directory"\npath = "{data}"\n')
    server = started(RedisServer(persistent=True))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_"))},
        **store,
        **RELIABILITY,
        "BROKER_URL": server.url,
        "DATABASE_URL": catalog,
        "BACKFLEET_CONFIG": str(config),
        "BACKFLEET_API_KEYS": KEY,
        "BACKUP_MAX_BANDWIDTH": "3MiB",  # 24 MiB take ~8 s: time to strike mid-upload
        **(extra or {}),
    }
    for name in ("REDIS_URL", "BACKFLEET_NAMESPACE", "ENABLE_REGULAR_BACKUPS"):
        env.pop(name, None)
    fleet = FleetProcesses(env, tmp_path / "logs")
    try:
        fleet.prepare()
        yield Rig(fleet, env, catalog, server, data)
    finally:
        fleet.close()
        server.close()
        dispose_engines()


def stored_bytes_match(rig: Rig, namespace: str, timestamp: str) -> None:
    """Every artifact in the store hashes to the manifest's SHA-256; no upload is left open."""
    with mock.patch.dict(os.environ, rig.env, clear=True):
        store = make_store(Settings())
    with store.open_read(manifest_key(namespace, timestamp)) as handle:
        manifest = Manifest.from_bytes(handle.read())
    assert manifest.artifacts
    for entry in manifest.artifacts:
        digest = hashlib.sha256()
        with store.open_read(entry.key) as handle:
            while chunk := handle.read(MiB):
                digest.update(chunk)
        assert digest.hexdigest() == entry.sha256, entry.key
    assert list(store.list_uploads(namespace + "/")) == []


@pytest.fixture
def s3_or_azure(request: pytest.FixtureRequest) -> dict[str, str]:
    return store_env(request.param, request)


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("s3_or_azure", "pool"),
    [("s3", "prefork"), ("azure", "prefork"), ("s3", "threads")],  # threads: one process
    indirect=["s3_or_azure"],
)
def test_a_worker_killed_mid_upload_hands_the_backup_to_another(
    tmp_path: Path, s3_or_azure: dict[str, str], pool: str
) -> None:
    with make_rig(tmp_path, s3_or_azure, f"sqlite:///{tmp_path}/catalog.db") as rig:
        first = rig.fleet.worker("first", pool=pool)
        assert rig.fleet.cli("backup").returncode == 0
        wait_for(lambda: rig.parts_recorded() >= 2, seconds=60, what="two parts uploaded")
        stop(first, signal.SIGKILL)  # the whole pod: main process and pool child

        rig.fleet.worker("second", pool=pool)
        # Redis hands the unacknowledged task back after the visibility timeout (30 s).
        wait_for(lambda: rig.finished() is not None, seconds=150, what="the backup ending")
        (backup,) = rig.backups()
        assert backup.status == SUCCESS, backup.error
        assert backup.attempts == 2
        stored_bytes_match(rig, "app", backup.timestamp)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_redis_restarting_during_a_backup_neither_loses_nor_doubles_it(
    tmp_path: Path, request: pytest.FixtureRequest, pool: str
) -> None:
    with make_rig(tmp_path, store_env("s3", request), f"sqlite:///{tmp_path}/catalog.db") as rig:
        rig.fleet.worker("one", pool=pool)
        rig.fleet.worker("two", pool=pool)
        beat = rig.fleet.beat("beat")
        client = redis.Redis.from_url(rig.redis.url)
        # Beat must be running (holding its lock) before the fault, not still starting.
        wait_for(lambda: bool(client.exists(LOCK)), seconds=60, what="beat holding its lock")
        assert rig.fleet.cli("backup").returncode == 0
        wait_for(lambda: rig.parts_recorded() >= 1, seconds=60, what="a part uploaded")
        rig.redis.stop()
        time.sleep(3)
        rig.redis.start()

        wait_for(lambda: rig.finished() is not None, seconds=180, what="the backup ending")
        (backup,) = rig.backups()
        assert backup.status == SUCCESS, backup.error
        stored_bytes_match(rig, "app", backup.timestamp)
        # The namespace lock kept a redelivered copy from running beside the first.
        logs = rig.fleet.log_of("one") + rig.fleet.log_of("two")
        assert logs.count("another holder took the namespace lock") == 0
        # Beat is still up, and holds its lock again in the restarted Redis.
        assert beat.poll() is None
        wait_for(
            lambda: bool(client.exists(LOCK)),
            seconds=30,
            what="beat holding its lock after the restart",
        )


@pytest.mark.timeout(240)
def test_a_catalog_outage_of_10_s_during_a_backup_only_delays_its_record(
    tmp_path: Path, request: pytest.FixtureRequest, postgres_server: Any
) -> None:
    name = f"faults_{os.getpid()}_{int(time.time())}"
    direct = postgres_server.create_database(name)
    host_port = direct.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1) if ":" in host_port else (host_port, "5432")
    try:
        with TcpGate((host, int(port))) as gate:
            gated = direct.replace(host_port, f"127.0.0.1:{gate.port}", 1)
            with make_rig(tmp_path, store_env("s3", request), gated) as rig:
                rig.fleet.worker("worker")
                assert rig.fleet.cli("backup").returncode == 0
                wait_for(lambda: rig.parts_recorded() >= 1, seconds=60, what="a part uploaded")
                dispose_engines()  # the test's own connections go through the gate too
                gate.outage(10)
                time.sleep(10)
                wait_for(lambda: rig.finished() is not None, seconds=120, what="the record")
                (backup,) = rig.backups()
                assert backup.status == SUCCESS, backup.error
                assert backup.attempts == 1  # ridden out in place, not redelivered
                assert "catalog unreachable" in rig.fleet.log_of("worker")
                stored_bytes_match(rig, "app", backup.timestamp)
    finally:
        dispose_engines()
        postgres_server.drop_database(name)


@pytest.mark.timeout(180)
def test_two_beats_dispatch_each_tick_once_and_a_standby_takes_over(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with make_rig(tmp_path, store_env("s3", request), f"sqlite:///{tmp_path}/catalog.db") as rig:
        client = redis.Redis.from_url(rig.redis.url)
        beats = {"beat-a": rig.fleet.beat("beat-a"), "beat-b": rig.fleet.beat("beat-b")}
        wait_for(lambda: bool(client.exists(LOCK)), seconds=60, what="a beat lock")
        add_interval_entry(rig.env, seconds=2)

        time.sleep(20)
        sends = dispatches(rig)
        active = [name for name, count in sends.items() if count]
        assert len(active) == 1, sends  # the other one waits on the lock
        assert 6 <= sends[active[0]] <= 11, sends  # a 2 s entry over ~20 s, once per tick

        stop(beats[active[0]], signal.SIGKILL)
        (standby,) = set(beats) - set(active)
        before = dispatches(rig)[standby]
        # The lock expires (BEAT_LOCK_TIMEOUT 6 s) and the standby takes over well within 60 s.
        wait_for(lambda: dispatches(rig)[standby] > before + 2, seconds=60, what="takeover")


def add_interval_entry(env: dict[str, str], *, seconds: int) -> None:
    """A RedBeat entry every `seconds` s, added as an operator would at run time."""
    script = (
        "from datetime import timedelta\n"
        "from celery.schedules import schedule\n"
        "from redbeat import RedBeatSchedulerEntry\n"
        "from tasks.app import app\n"
        f"RedBeatSchedulerEntry('probe', 'tasks.retention.abort_stale_uploads', "
        f"schedule(timedelta(seconds={seconds})), app=app, "
        "options={'queue': 'maintenance'}).save()\n"
    )
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)


def dispatches(rig: Rig) -> dict[str, int]:
    return {
        name: rig.fleet.log_of(name).count("Sending due task probe")
        for name in ("beat-a", "beat-b")
    }


@pytest.mark.timeout(300)
def test_200_requests_over_20_namespaces_each_backup_runs_once(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    namespaces = [f"ns{index:02d}" for index in range(20)]
    config = tmp_path / "many.toml"
    lines = []
    for namespace in namespaces:
        folder = tmp_path / "many" / namespace
        write_blobs(folder, 2, 64 * 1024)
        lines.append(
            f'[namespaces.{namespace}.services.files]\nkind = "directory"\npath = "{folder}"\n'
        )
    config.write_text('namespace = "ns00"\n' + "".join(lines))
    extra = {"BACKFLEET_CONFIG": str(config), "BACKUP_MAX_BANDWIDTH": "0"}
    with make_rig(
        tmp_path, store_env("s3", request), f"sqlite:///{tmp_path}/catalog.db", extra
    ) as rig:
        port = free_port()
        rig.fleet.env["BACKFLEET_API_PORT"] = str(port)
        rig.fleet.api(port)
        rig.fleet.worker("one")
        rig.fleet.worker("two")
        answers: list[tuple[str, int, str]] = []
        guard = threading.Lock()

        def ask(namespace: str) -> None:
            with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                reply = client.post(
                    "/athena/api/v1/ondemandbackup",
                    json={"namespace": namespace},
                    headers={"Authorization": KEY},
                )
            body = reply.json()
            with guard:
                answers.append((namespace, reply.status_code, json.dumps(body)))

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(ask, [namespaces[i % 20] for i in range(200)]))

        codes = [code for _, code, _ in answers]
        assert len(answers) == 200 and set(codes) <= {202, 409}, set(codes)
        assert codes.count(409) > 0  # ten requests per namespace cannot all be taken
        accepted: dict[str, int] = {}
        for namespace, code, _ in answers:
            if code == 202:
                accepted[namespace] = accepted.get(namespace, 0) + 1
        assert set(accepted) == set(namespaces)

        def all_done() -> bool:
            with session_scope(rig.catalog) as session:
                rows = session.scalars(select(Backup)).all()
                return len(rows) == sum(accepted.values()) and all(
                    row.status in ("Success", "Failed") for row in rows
                )

        wait_for(all_done, seconds=240, what="every accepted backup ending", every=1)
        with session_scope(rig.catalog) as session:
            rows = session.scalars(select(Backup)).all()
            assert all(row.status == SUCCESS for row in rows), [r.error for r in rows]
            assert all(row.attempts == 1 for row in rows)  # none ran twice
            per_namespace = {ns: sum(r.namespace == ns for r in rows) for ns in namespaces}
            assert per_namespace == accepted
            pairs = [(row.namespace, row.timestamp) for row in rows]
        for namespace, timestamp in pairs[:3]:
            stored_bytes_match(rig, namespace, timestamp)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_sigterm_lets_the_running_backup_finish(
    tmp_path: Path, request: pytest.FixtureRequest, pool: str
) -> None:
    with make_rig(tmp_path, store_env("s3", request), f"sqlite:///{tmp_path}/catalog.db") as rig:
        worker = rig.fleet.worker("worker", pool=pool)
        assert rig.fleet.cli("backup").returncode == 0
        wait_for(lambda: rig.parts_recorded() >= 1, seconds=60, what="a part uploaded")
        os.kill(worker.pid, signal.SIGTERM)  # what Kubernetes sends the main process
        worker.wait(90)
        (backup,) = rig.backups()
        assert backup.status == SUCCESS, backup.error
        assert backup.attempts == 1
        assert "Warm shutdown" in rig.fleet.log_of("worker")
        stored_bytes_match(rig, "app", backup.timestamp)


def test_importing_the_app_and_tasks_connects_to_nothing(tmp_path: Path) -> None:
    """SDK clients, pools and engines are made after the worker forks, never at import."""
    script = (
        "import tasks.backup, tasks.restore, tasks.retention, tasks.app\n"
        "from workers.catalog import db\n"
        "from workers.operations import locks\n"
        "from workers import fleet\n"
        "assert db._engines == {}, db._engines\n"
        "assert locks._client.cache_info().currsize == 0\n"
        "assert fleet._current is None  # no store, so no S3 or Azure client\n"
        "print('clean')\n"
    )
    env = {**os.environ, "BROKER_URL": "redis://127.0.0.1:1/0", "DATABASE_URL": "sqlite:///x"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and "clean" in done.stdout, done.stderr

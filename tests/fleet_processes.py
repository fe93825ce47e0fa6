"""Real fleet processes for the integration and fault tests: workers, beats and the API.

Each runs in its own process group, so a test can SIGKILL a whole worker
(main process and pool children) as a pod eviction would; every process is
stopped at the end, and its log tail is printed (pytest shows it on failure).
At the end every log is also scanned for every secret the test gave the fleet
(tests.secret_scan); when the test gave no store or API keys, harmless ones
are added so there is always something to look for.
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx2

from tests.secret_scan import assert_no_secret_in_logs
from workers.queues import ALL_QUEUES


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], *, seconds: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def answers(url: str) -> bool:
    try:
        return httpx2.get(url, timeout=1).status_code == 200
    except httpx2.HTTPError:
        return False


def stop(process: "subprocess.Popen[bytes]", sig: int = signal.SIGTERM, wait: float = 20) -> None:
    """Signal the process group; SIGKILL it if it has not ended within `wait` s."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
            process.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass


class FleetProcesses:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        if env.get("OBJECT_STORE_LOCATION_TYPE", "local") == "local":
            # Unused by a local store: present so the log scan has them to look for.
            env.setdefault("AWS_ACCESS_KEY", f"AKIA{secrets.token_hex(8).upper()}")
            env.setdefault("AWS_SECRET_KEY", secrets.token_urlsafe(30))
            env.setdefault("AZURE_STORAGE_ACCESS_KEY", secrets.token_urlsafe(40))
        env.setdefault("BACKFLEET_API_KEYS", f"scan-{secrets.token_urlsafe(16)}")
        self.env, self.logs = env, logs
        logs.mkdir(parents=True, exist_ok=True)
        self.processes: list[subprocess.Popen[bytes]] = []
        self._files: list[IO[bytes]] = []

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "workers.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def prepare(self) -> None:
        """Migrate the catalog and create the bucket or container."""
        for args in (("migrate",), ("store", "init")):
            done = self.cli(*args)
            assert done.returncode == 0, done.stderr

    def start(self, name: str, argv: list[str]) -> "subprocess.Popen[bytes]":
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (closed in close())
        self._files.append(log)
        process = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        return process

    def worker(
        self, name: str, *, queues: str = ALL_QUEUES, concurrency: int = 1, pool: str = "prefork"
    ) -> "subprocess.Popen[bytes]":
        return self.start(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tasks.app",
                "worker",
                "-Q",
                queues,
                "--concurrency",
                str(concurrency),
                "--pool",
                pool,
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
                "-n",
                f"{name}-{os.getpid()}@%h",
            ],
        )

    def beat(self, name: str) -> "subprocess.Popen[bytes]":
        return self.start(
            name,
            [sys.executable, "-m", "celery", "-A", "tasks.app", "beat", "--loglevel", "INFO"],
        )

    def api(self, port: int) -> "subprocess.Popen[bytes]":
        process = self.start(
            "api", [sys.executable, "-m", "workers.cli", "api", "--port", str(port)]
        )
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), seconds=60, what="the API")
        return process

    def log_of(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for process in self.processes:
            stop(process)
        for file in self._files:
            file.close()
        for log in sorted(self.logs.iterdir()):  # shown by pytest only when the test failed
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-6000:]}")
        assert_no_secret_in_logs(self.env, self.logs)

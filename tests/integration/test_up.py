"""`backfleet up` for real: everything starts on 127.0.0.1, and Ctrl-C stops it all."""

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
import redis

from workers.cli.embedded_redis import free_port, start_embedded_redis, stop_embedded_redis

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


def test_embedded_redis_starts_persists_and_stops(tmp_path: Path) -> None:
    process, url = start_embedded_redis(tmp_path / "redis")
    try:
        assert url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(url, socket_timeout=5)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        client.close()
    finally:
        stop_embedded_redis(process, grace=10)
    assert process.returncode == 0  # a clean shutdown on SIGTERM
    assert stat.S_IMODE((tmp_path / "redis").stat().st_mode) == 0o700


def processes_in(directory: Path) -> dict[int, str]:
    """Every live process working in `directory` (or below it), with its command line."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            if cwd != directory and directory not in cwd.parents:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if state != "Z":
            found[int(entry.name)] = cmdline.strip()
    return found


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    process: subprocess.Popen[bytes],
    log: Path,
    what: str,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"backfleet up exited ({process.returncode}) before {what}:\n{tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {timeout:.0f} s:\n{tail(log)}")
        time.sleep(0.5)


def tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def answers_http(url: str, expected: int | None = None) -> bool:
    try:
        response = httpx2.get(url, timeout=2)
    except httpx2.HTTPError:
        return False
    return expected is None or response.status_code == expected


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_up_starts_everything_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    site = (tmp_path / "site").resolve()
    site.mkdir()
    api_port, flower_port = free_port(), free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("BACKFLEET_", "BROKER_", "REDIS_", "DATABASE_", "OBJECT_STORE_"))
    }
    env |= {
        "BACKFLEET_API_PORT": str(api_port),
        "BACKFLEET_FLOWER_PORT": str(flower_port),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    }
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "workers.cli.up"],
            cwd=site,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives `make up`
            preexec_fn=ignore_sigint,  # as a shell starts `up &`: it must still obey Ctrl-C
        )
    try:
        base = f"http://127.0.0.1:{api_port}"
        wait_for(lambda: answers_http(f"{base}/healthz", 200), START_TIMEOUT, up, log, "the API")
        wait_for(lambda: answers_http(f"http://127.0.0.1:{flower_port}/"), 30, up, log, "Flower")
        wait_for(lambda: "Backfleet is up." in log.read_text(), 10, up, log, "the banner")

        key_file = site / "var" / "api-key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((site / "var").stat().st_mode) == 0o700
        key = key_file.read_text().strip()
        assert f'-H "Authorization: {key}"' in log.read_text()
        # Each child's lines carry its name, so four processes' logs can be told apart.
        lines = log.read_text().splitlines()
        for name in ("api", "worker", "beat", "flower", "migrate", "wal"):
            assert any(line.startswith(f"{name:<7}| ") for line in lines), name
        latest = httpx2.get(
            f"{base}/athena/api/v1/backup/latest", headers={"Authorization": key}, timeout=10
        )
        assert latest.status_code == 404, latest.text  # authorised, and no backup yet
        assert httpx2.get(f"{base}/athena/api/v1/backup/latest", timeout=10).status_code == 401

        running = processes_in(site)
        names = " ".join(running.values())
        for part in ("redis-server", "uvicorn", "worker", "beat", "flower", "workers.cli wal"):
            assert part in names, running
        assert not listening(6379) or "6379" not in names  # the private Redis, not the shared one

        os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C does
        assert up.wait(timeout=STOP_TIMEOUT) == 0, tail(log)
        deadline = time.monotonic() + STOP_TIMEOUT
        while processes_in(site) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_in(site) == {}, "orphans left behind"
        assert "Connection to broker lost" not in log.read_text(), "Redis was not stopped last"
        assert not listening(api_port) and not listening(flower_port)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        for pid in processes_in(site):  # only ours: they run in this test's own directory
            os.kill(pid, signal.SIGKILL)

"""A second shell reaches the fleet `backfleet up` runs (issue 20): from the same folder
with nothing exported, and from anywhere with BACKFLEET_ENV_FILE.

The shell's environment has none of Backfleet's variables, as a new terminal has none:
without var/fleet.env the CLI would send its backup to 127.0.0.1:6379 (another Redis on
this machine, or nobody), read ./backfleet.toml and look for backups in /backup.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_up import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    answers_http,
    processes_in,
    tail,
    wait_for,
)
from workers.cli.embedded_redis import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
OURS = ("BACKFLEET_", "BROKER_", "REDIS_", "DATABASE_", "OBJECT_STORE_", "BACKUP_")


def a_new_terminal() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(OURS)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def backfleet(
    cwd: Path, env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.timeout(400)
def test_a_second_shell_backs_up_lists_and_restores_through_the_running_fleet(
    tmp_path: Path,
) -> None:
    site = (tmp_path / "site").resolve()
    site.mkdir()
    api_port, flower_port = free_port(), free_port()
    up_env = a_new_terminal() | {
        "BACKFLEET_API_PORT": str(api_port),
        "BACKFLEET_FLOWER_PORT": str(flower_port),
    }
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "up"],
            cwd=site,
            env=up_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{api_port}"
        wait_for(lambda: answers_http(f"{base}/healthz", 200), START_TIMEOUT, up, log, "the API")
        wait_for(lambda: "Backfleet is up." in log.read_text(), 30, up, log, "the banner")
        assert "BACKFLEET_ENV_FILE" in log.read_text()  # the banner says how to reach it
        shell = a_new_terminal()

        backed_up = backfleet(site, shell, "backup", "--wait")
        assert backed_up.returncode == 0, backed_up.stdout + backed_up.stderr + tail(log)
        listed = backfleet(site, shell, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert [row["status"] for row in rows] == ["Success"]

        restored = backfleet(site, shell, "restore", "latest", "--wait")
        assert restored.returncode == 0, restored.stdout + restored.stderr + tail(log)
        assert f"restore of {rows[0]['namespace']}/{rows[0]['timestamp']}" in restored.stdout

        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        pointed = shell | {"BACKFLEET_ENV_FILE": str(site / "var" / "fleet.env")}
        status = backfleet(elsewhere, pointed, "list", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)[0]["timestamp"] == rows[0]["timestamp"]
        lost = backfleet(
            elsewhere, shell | {"BACKFLEET_ENV_FILE": str(elsewhere / "no.env")}, "list"
        )
        assert lost.returncode == 2 and "BACKFLEET_ENV_FILE names" in lost.stderr

        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(timeout=STOP_TIMEOUT) == 0, tail(log)

        # Second review, finding 12: after `up` stopped, its fleet.env still points at the
        # embedded Redis that went with it: the error says so, not only "start it".
        stale = backfleet(site, shell, "backup")
        assert stale.returncode == 3, stale.stderr
        assert f"was written by `backfleet up` (pid {up.pid}), which is no longer running" in (
            stale.stderr
        )
        assert backfleet(site, shell, "list").returncode == 0  # the catalog is still there
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        for pid in processes_in(site):
            os.kill(pid, signal.SIGKILL)

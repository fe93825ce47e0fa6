"""`backfleet worker --queues` consumes only the queues named; the container probes see the
worker, and Flower behind basic auth."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def probe(env: dict[str, str], node: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.healthcheck", "worker", "-n", node],  # the older name
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_worker_of_two_queues_answers_the_probe(redis_server: Any, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BROKER_URL": redis_server.url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}",
        "BACKFLEET_CONFIG": str(tmp_path / "absent.toml"),
    }
    node = f"celery@probe-{uuid.uuid4().hex[:8]}"
    assert probe(env, node).returncode == 1  # no such worker yet
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "workers.cli", "worker", "--queues", "backup,restore"),
            *("-n", node, "--concurrency", "1", "--without-gossip", "--without-mingle"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while (result := probe(env, node)).returncode != 0:
            assert time.monotonic() < deadline, result.stderr
            assert worker.poll() is None, "the worker exited"
            time.sleep(1)
        inspect = subprocess.run(
            [
                *(sys.executable, "-m", "celery", "-A", "workers.app", "inspect"),
                *("active_queues", "-d", node, "-j", "-t", "10"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        replies = json.loads(inspect.stdout)
        assert sorted(queue["name"] for queue in replies[node]) == ["backup", "restore"]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)


def test_an_unknown_queue_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "worker", "--queues", "backup,nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--queues" in result.stderr


def test_flower_behind_basic_auth_still_answers_the_probe_and_prometheus(
    redis_server: Any, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {
        **os.environ,
        "BROKER_URL": redis_server.url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}",
        "FLOWER_BASIC_AUTH": "ops:flower-secret-7",
    }
    flower = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "flower", f"--port={port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while probe_flower(env, port).returncode != 0:
            assert time.monotonic() < deadline, "Flower did not answer its probe"
            assert flower.poll() is None, "Flower exited"
            time.sleep(0.5)
        base = f"http://127.0.0.1:{port}"
        assert httpx2.get(f"{base}/tasks", timeout=10).status_code == 401
        assert httpx2.get(f"{base}/tasks", auth=("ops", "flower-secret-7"), timeout=10).is_success
        metrics = httpx2.get(f"{base}/metrics", timeout=10)
        assert metrics.status_code == 200 and "flower_" in metrics.text
    finally:
        flower.send_signal(signal.SIGTERM)
        flower.wait(timeout=30)


def probe_flower(env: dict[str, str], port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli.healthcheck", "flower", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

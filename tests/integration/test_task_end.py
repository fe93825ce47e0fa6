"""`backup --wait` hears of the task's end from Celery's Redis result backend without Celery
(tasks/results.py): a state the worker stores before the wait begins, or publishes while
it blocks, ends the wait at once; a started task does not; a backend that does not answer
costs the waiter its seconds, not a busy loop."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tasks.results import TaskEnd
from workers.cli.embedded_redis import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
# What a worker does (celery.backends.redis: SET then PUBLISH in one MULTI), through
# Celery's own backend, after `delay` seconds.
STORE = """
import sys, time
from tasks.app import app
time.sleep(float(sys.argv[2]))
for state in sys.argv[3:]:
    app.backend.store_result(sys.argv[1], {"status": "x"}, state)
"""


def worker_stores(url: str, task_id: str, delay: float, *states: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BROKER_URL": url}
    return subprocess.Popen(
        [sys.executable, "-c", STORE, task_id, str(delay), *states],
        env=env,
        cwd=ROOT,
        text=True,
    )


def test_a_task_that_ended_before_the_wait_is_heard_at_once(redis_server: Any) -> None:
    task_id = str(uuid.uuid4())
    assert worker_stores(redis_server.url, task_id, 0, "STARTED", "SUCCESS").wait(60) == 0
    started = time.monotonic()
    assert TaskEnd(redis_server.url)(task_id, 10) is True
    assert time.monotonic() - started < 2


def test_an_end_published_while_waiting_ends_the_wait(redis_server: Any) -> None:
    task_id = str(uuid.uuid4())
    waiter = TaskEnd(redis_server.url)
    assert waiter(task_id, 0.2) is False  # subscribed; nothing yet
    storing = worker_stores(redis_server.url, task_id, 1.0, "STARTED", "FAILURE")
    started = time.monotonic()
    assert waiter(task_id, 30) is True
    assert time.monotonic() - started < 15  # the publish, not the timeout
    assert storing.wait(60) == 0


def test_a_started_task_has_not_ended(redis_server: Any) -> None:
    task_id = str(uuid.uuid4())
    assert worker_stores(redis_server.url, task_id, 0, "STARTED").wait(60) == 0
    waiter = TaskEnd(redis_server.url)
    started = time.monotonic()
    assert waiter(task_id, 0.5) is False
    assert time.monotonic() - started >= 0.5


def test_a_backend_that_does_not_answer_costs_the_timeout_not_a_busy_loop() -> None:
    waiter = TaskEnd(f"redis://127.0.0.1:{free_port()}/0")
    started, cpu = time.monotonic(), time.process_time()
    assert waiter("task-1", 0.5) is False
    assert time.monotonic() - started >= 0.5
    assert time.process_time() - cpu < 0.4

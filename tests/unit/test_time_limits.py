"""tasks/time_limits.py: the soft and hard time limits of a one-process (threads) worker."""

import subprocess
import sys
import threading
import time

import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.concurrency.solo import TaskPool as SoloPool
from celery.concurrency.thread import TaskPool as ThreadsPool

from tasks.time_limits import (
    HARD_LIMIT_EXIT,
    EnforcingThreadsPool,
    Watchdog,
    limited,
    use_enforcing_pool,
)
from workers.sources.process import PolledPipe, wait_for_exit
from workers.transfer.budget import PartBudget


class Calls:
    def __init__(self) -> None:
        self.timeouts: list[tuple[bool, float]] = []
        self.exits: list[int] = []
        self.exited = threading.Event()

    def on_timeout(self, soft: bool, limit: float) -> None:
        self.timeouts.append((soft, limit))

    def exit(self, code: int) -> None:
        self.exits.append(code)
        self.exited.set()
        threading.Event().wait()  # the watchdog's (daemon) thread goes no further, as os._exit


def run_in_thread(function: object) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def body() -> None:
        try:
            outcome.append(function())  # type: ignore[operator]
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    return thread, outcome


@pytest.mark.timeout(20)
def test_the_soft_limit_is_raised_in_the_tasks_thread_even_while_it_waits() -> None:
    calls = Calls()
    watchdog = Watchdog(calls.exit)
    event = threading.Event()

    def task() -> str:
        while not event.wait(0.05):  # a sliced wait, as the backup's thread waits
            pass
        return "ended"

    started = time.monotonic()
    thread, outcome = run_in_thread(limited(task, 0.3, 30, calls.on_timeout, watchdog))
    thread.join(10)
    assert isinstance(outcome[0], SoftTimeLimitExceeded)
    assert 0.3 <= time.monotonic() - started < 2
    assert calls.timeouts == [(True, 0.3)] and calls.exits == []


@pytest.mark.timeout(20)
def test_a_task_that_ends_in_time_gets_nothing_and_nothing_lands_afterwards() -> None:
    calls = Calls()
    watchdog = Watchdog(calls.exit)
    thread, outcome = run_in_thread(limited(lambda: 42, 0.2, 0.4, calls.on_timeout, watchdog))
    thread.join(10)
    assert outcome == [42]
    time.sleep(0.6)  # past both limits: the job was withdrawn
    assert calls.timeouts == [] and calls.exits == []


@pytest.mark.timeout(20)
def test_the_hard_limit_runs_celerys_handler_then_exits_the_process() -> None:
    calls = Calls()
    watchdog = Watchdog(calls.exit)
    release = threading.Event()

    def stuck() -> None:  # ignores the soft limit, as a thread stuck in a system call would
        while not release.is_set():
            try:
                release.wait(0.05)
            except SoftTimeLimitExceeded:
                continue

    thread, _ = run_in_thread(limited(stuck, 0.2, 0.5, calls.on_timeout, watchdog))
    assert calls.exited.wait(10)
    release.set()
    thread.join(10)
    assert calls.timeouts == [(True, 0.2), (False, 0.5)]
    assert calls.exits == [HARD_LIMIT_EXIT]


@pytest.mark.timeout(20)
def test_the_process_exits_only_once_the_consumer_has_settled_the_message() -> None:
    """Celery's on_timeout hands the acknowledgement to the consumer's event loop: exiting
    at once would leave the message unacknowledged, to be delivered again."""

    class Message:
        acknowledged = False

    class Request(Calls):  # Celery's Request: on_timeout, and the message it settles
        message = Message()

        def on_timeout(self, soft: bool, limit: float) -> None:
            super().on_timeout(soft, limit)
            if not soft:  # the event loop acknowledges a little later
                threading.Timer(0.5, setattr, (self.message, "acknowledged", True)).start()

    request = Request()
    watchdog = Watchdog(request.exit)
    release = threading.Event()

    def stuck() -> None:
        while not release.is_set():
            try:
                release.wait(0.05)
            except SoftTimeLimitExceeded:
                continue

    thread, _ = run_in_thread(limited(stuck, None, 0.2, request.on_timeout, watchdog))
    assert request.exited.wait(10)
    assert request.message.acknowledged  # settled before the exit
    release.set()
    thread.join(10)


def test_the_worker_gets_the_enforcing_pool_for_threads_only() -> None:
    class Worker:
        def __init__(self, pool: object) -> None:
            self.pool_cls = pool

    threads = Worker(ThreadsPool)
    assert use_enforcing_pool(threads) and threads.pool_cls is EnforcingThreadsPool
    named = Worker("threads")  # as `worker_pool = "threads"` in a configuration
    assert use_enforcing_pool(named) and named.pool_cls is EnforcingThreadsPool
    for pool in (PreforkPool, SoloPool):
        other = Worker(pool)
        assert not use_enforcing_pool(other) and other.pool_cls is pool


@pytest.mark.timeout(20)
def test_a_polled_pipe_reads_whole_chunks_whatever_the_timing() -> None:
    script = (
        "import sys, time\n"
        "for _ in range(5):\n"
        "    sys.stdout.buffer.write(b'x' * 70000); sys.stdout.flush(); time.sleep(0.05)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert process.stdout is not None
    pipe = PolledPipe(process.stdout)
    sizes = []
    while chunk := pipe.read(100000):
        sizes.append(len(chunk))
    pipe.close()
    assert wait_for_exit(process) == 0
    assert sizes == [100000, 100000, 100000, 50000]


@pytest.mark.timeout(20)
def test_waiting_for_a_tool_honours_its_timeout_in_slices() -> None:
    process = subprocess.Popen(["sleep", "30"])
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        wait_for_exit(process, 0.7)
    assert 0.7 <= time.monotonic() - started < 2
    process.kill()
    assert wait_for_exit(process) != 0


@pytest.mark.timeout(20)
def test_a_part_slot_wait_lets_the_soft_limit_in() -> None:
    calls = Calls()
    watchdog = Watchdog(calls.exit)
    budget = PartBudget(1)
    assert budget.take_slot(wait=True)  # the only slot, never given back

    thread, outcome = run_in_thread(
        limited(lambda: budget.take_slot(wait=True), 0.3, 30, calls.on_timeout, watchdog)
    )
    thread.join(10)
    assert isinstance(outcome[0], SoftTimeLimitExceeded)

"""The task time limits in a one-process worker (`--pool threads`).

Celery enforces `task_soft_time_limit` and `task_time_limit` (BACKUP_SOFT_TIME_LIMIT,
BACKUP_TIME_LIMIT) only in its prefork pool: there the parent signals the child
that runs the task (SIGUSR1 raises SoftTimeLimitExceeded in it) and kills it at
the hard limit. A one-process worker saves the second interpreter (bench/RESULTS.md,
session 12), so Backfleet enforces the same limits itself, with the same outcome:

- at the soft limit, SoftTimeLimitExceeded is raised in the thread that runs the
  task (PyThreadState_SetAsyncExc), which the backup handles as it does in a
  prefork child: the dump stopped, the uploads aborted, `post` hooks run on, the
  row Failed "stopped by BACKUP_SOFT_TIME_LIMIT". It lands at the thread's next
  Python instruction: the waits of the backup's own thread are sliced (WAKE_EVERY
  in the modules that wait) so that is within a second; a thread stuck inside one
  system call (a store that never answers) gets it when the call returns;
- at the hard limit, Celery's own handler runs as the prefork pool runs it (the
  result marked failed with TimeLimitExceeded, the task's failure hooks, the
  message acknowledged by the acks_late rules: a backup killed by its hard limit
  is settled by the reconciler, not redelivered), then the whole process exits
  with HARD_LIMIT_EXIT: a thread cannot be killed, so the process goes, and the
  platform (Kubernetes, compose's `restart: unless-stopped`) starts a fresh one.
  Any other task the process was running is redelivered (unacknowledged), as when
  a prefork worker is killed: run one task per process (`--concurrency 1`).

`use_enforcing_pool` swaps Celery's threads pool for EnforcingThreadsPool when
the worker starts (the `worker_init` signal, tasks/app.py), so a plain
`celery -A workers.app worker --pool threads` gets it. The solo pool is not
covered: it runs the task in the thread that answers the healthcheck's ping.
"""

import contextlib
import ctypes
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from celery import concurrency
from celery.concurrency.solo import TaskPool as SoloPool
from celery.concurrency.thread import TaskPool as ThreadsPool

log = logging.getLogger(__name__)

HARD_LIMIT_EXIT = 70  # EX_SOFTWARE: the process ended itself; any supervisor restarts it
# Celery hands an acknowledgement to the consumer's event loop (hub.call_soon): the
# process waits this long at most for it to be done before exiting.
SETTLE_WAIT = 10.0
TimeoutCallback = Callable[[bool, float], None]


@dataclass
class _Job:
    thread: int  # threading.get_ident() of the thread running the task
    soft_at: float | None  # time.monotonic() instants
    hard_at: float | None
    soft_limit: float | None
    hard_limit: float | None
    on_timeout: TimeoutCallback | None
    soft_sent: bool = False


def raise_in_thread(thread: int, exception: type[BaseException] | None) -> bool:
    """Have `exception` raised in the thread at its next Python instruction (None: withdraw
    one not yet raised); False if no such thread runs."""
    target = ctypes.py_object(exception) if exception is not None else None
    found = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), target)
    return int(found) == 1


class Watchdog:
    """One thread that watches the running tasks' deadlines."""

    def __init__(self, exit_process: Callable[[int], None] = os._exit) -> None:
        self._jobs: dict[int, _Job] = {}
        self._lock = threading.Condition()
        self._exit = exit_process
        self._thread: threading.Thread | None = None

    def start_job(
        self,
        soft_limit: float | None,
        hard_limit: float | None,
        on_timeout: TimeoutCallback | None,
    ) -> int:
        """Watch the task the calling thread starts now; returns the key for finish_job."""
        now = time.monotonic()
        job = _Job(
            thread=threading.get_ident(),
            soft_at=now + soft_limit if soft_limit else None,
            hard_at=now + hard_limit if hard_limit else None,
            soft_limit=soft_limit,
            hard_limit=hard_limit,
            on_timeout=on_timeout,
        )
        with self._lock:
            key = id(job)
            self._jobs[key] = job
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="backfleet-time-limits", daemon=True
                )
                self._thread.start()
            self._lock.notify()
        return key

    def finish_job(self, key: int) -> None:
        """The task's code has returned: nothing more is raised in its thread.

        Idempotent: call it again if SoftTimeLimitExceeded landed in the first call."""
        with self._lock:
            job = self._jobs.pop(key, None)
        if job is not None and job.soft_sent:
            raise_in_thread(job.thread, None)  # sent, but came after the task's code ended

    def _watch(self) -> None:
        while True:
            soft: list[_Job] = []
            with self._lock:
                now = time.monotonic()
                due = [instant for job in self._jobs.values() for instant in _pending(job)]
                if not due or min(due) > now:
                    self._lock.wait(None if not due else min(due) - now)
                    continue
                for key, job in list(self._jobs.items()):
                    if job.hard_at is not None and job.hard_at <= now:
                        del self._jobs[key]
                        hard = job
                        break
                    if job.soft_at is not None and job.soft_at <= now and not job.soft_sent:
                        # Under the lock: finish_job cannot have withdrawn the job meanwhile.
                        job.soft_sent = True
                        raise_in_thread(job.thread, SoftTimeLimitExceeded)
                        soft.append(job)
                else:
                    hard = None
            for job in soft:  # Celery's warning, as the prefork pool logs it
                _call(job.on_timeout, True, job.soft_limit)
            if hard is not None:
                self._hard_limit(hard)

    def _hard_limit(self, job: _Job) -> None:
        log.error(
            "a task ran past its hard time limit (%s s), and a one-process worker cannot "
            "stop one: the worker exits (status %s) for its supervisor to start it again",
            job.hard_limit,
            HARD_LIMIT_EXIT,
        )
        _call(job.on_timeout, False, job.hard_limit)  # marks it failed, acknowledges it
        if not _settled(job.on_timeout, SETTLE_WAIT):
            log.error("the task's message was not settled %.0f s after its hard limit", SETTLE_WAIT)
        for stream in (*logging.getLogger().handlers, sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # exiting matters more
                stream.flush()
        self._exit(HARD_LIMIT_EXIT)


def _settled(on_timeout: TimeoutCallback | None, patience: float) -> bool:
    """Whether the message of the task whose Request.on_timeout this is has been
    acknowledged (or rejected) by now: the consumer's thread does it soon after; wait
    for it at most `patience` seconds. True when there is nothing to wait for."""
    message = getattr(getattr(on_timeout, "__self__", None), "message", None)
    if message is None:
        return True
    deadline = time.monotonic() + patience
    while not message.acknowledged:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _pending(job: _Job) -> list[float]:
    instants = [job.hard_at] if job.hard_at is not None else []
    if job.soft_at is not None and not job.soft_sent:
        instants.append(job.soft_at)
    return instants


def _call(callback: TimeoutCallback | None, soft: bool, limit: float | None) -> None:
    if callback is None or limit is None:
        return
    try:
        callback(soft, limit)
    except Exception:  # Celery's bookkeeping must not stop the enforcement
        log.exception("the %s time limit's handler failed", "soft" if soft else "hard")


WATCHDOG = Watchdog()


def limited(
    target: Callable[..., Any],
    soft_limit: float | None,
    hard_limit: float | None,
    on_timeout: TimeoutCallback | None,
    watchdog: Watchdog = WATCHDOG,
) -> Callable[..., Any]:
    """`target` run under the time limits, in whichever thread calls it."""

    def run(*args: Any, **kwargs: Any) -> Any:
        key = watchdog.start_job(soft_limit, hard_limit, on_timeout)
        try:
            return target(*args, **kwargs)
        finally:
            while True:  # the soft limit is raised at most once: this ends by the second try
                try:
                    watchdog.finish_job(key)
                    break
                except SoftTimeLimitExceeded:
                    continue  # it came after the task's code had ended: nothing to stop

    return run


class _Enforcing:
    """Wraps each task the pool runs in `limited` (a mixin for Celery's pools)."""

    def on_apply(
        self,
        target: Callable[..., Any],
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        callback: Callable[..., Any] | None = None,
        accept_callback: Callable[..., Any] | None = None,
        timeout_callback: TimeoutCallback | None = None,
        soft_timeout: float | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Any:
        run = limited(target, soft_timeout, timeout, timeout_callback)
        return super().on_apply(  # type: ignore[misc]
            run, args, kwargs, callback, accept_callback, **options
        )


class EnforcingThreadsPool(_Enforcing, ThreadsPool):  # type: ignore[misc]
    """Celery's threads pool, with the task time limits enforced."""


def use_enforcing_pool(worker: Any) -> bool:
    """At `worker_init`: swap the threads pool the worker was given for its enforcing
    subclass. True when it is one: the tasks run in this process's threads, and no
    `worker_process_init` will be sent (the solo pool sends it itself)."""
    chosen = concurrency.get_implementation(worker.pool_cls)
    if chosen is ThreadsPool:
        worker.pool_cls = chosen = EnforcingThreadsPool
    if chosen is SoloPool:
        # Solo runs the task in the thread that answers pings: the worker healthcheck
        # would fail during every backup. Its time limits are left to Celery (none).
        log.warning(
            "the solo pool enforces no task time limit (BACKUP_SOFT_TIME_LIMIT, "
            "BACKUP_TIME_LIMIT); run a one-process worker with --pool threads"
        )
    return chosen is EnforcingThreadsPool

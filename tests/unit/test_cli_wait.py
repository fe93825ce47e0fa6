"""How `backup --wait` / `restore --wait` wait between two looks at the catalog
(workers/cli/progress.py `_Pause`) and hear of the task's end (tasks.enqueue.wait_for_task)."""

import time
from typing import Any

import pytest
from celery.exceptions import TimeoutError as ResultTimeout

import tasks.enqueue
from tasks.app import app
from workers.cli import progress


class Waiter:
    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, float]] = []

    def __call__(self, task_id: str, timeout: float) -> bool:
        self.calls.append((task_id, timeout))
        return self.answers.pop(0)


def test_with_a_waiter_the_pause_lasts_until_the_task_ends_then_falls_back_to_polling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(progress.time, "sleep", slept.append)
    waiter = Waiter([False, True])
    pause = progress._Pause(waiter, "task-1")

    pause()  # the bar is redrawn, the task still runs
    pause()  # it ended
    pause()  # its row is not terminal yet (the namespace went to another holder): poll

    assert waiter.calls == [("task-1", progress.DRAW_SECONDS)] * 2
    assert slept == [progress.POLL_SECONDS]


@pytest.mark.parametrize("waiter", [None, Waiter([])])
def test_without_a_waiter_or_a_task_id_the_catalog_is_polled(
    monkeypatch: pytest.MonkeyPatch, waiter: Waiter | None
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(progress.time, "sleep", slept.append)
    progress._Pause(waiter, None if waiter else "task-1")()
    assert slept == [progress.POLL_SECONDS]


class Result:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def get(self, *, timeout: float, propagate: bool) -> Any:
        assert not propagate  # a failed task is read from the catalog, not raised here
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


@pytest.mark.parametrize(
    ("outcome", "ended", "sleeps"),
    [
        ({"status": "Success"}, True, False),
        (ResultTimeout("still running"), False, False),
        (ConnectionError("the result backend is down"), False, True),
    ],
)
def test_wait_for_task_says_whether_the_task_ended(
    monkeypatch: pytest.MonkeyPatch, outcome: Any, ended: bool, sleeps: bool
) -> None:
    monkeypatch.setattr(app, "AsyncResult", lambda task_id: Result(outcome))
    started = time.monotonic()
    assert tasks.enqueue.wait_for_task("task-1", 0.2) is ended
    # A backend that cannot answer costs the caller its timeout, not a busy loop.
    assert (time.monotonic() - started >= 0.2) is sleeps


@pytest.mark.parametrize("quiet", [False, True])
def test_without_a_terminal_the_wait_prints_what_rich_s_bar_printed(
    quiet: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`backup --wait` loads rich only to draw on a terminal; elsewhere its stand-in prints
    what rich's transient bar prints there (an empty line at its end, nothing for --json)."""
    for name in progress.RICH_TERMINAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not progress.draws_a_bar(quiet)  # captured: stdout is no terminal
    shown = []
    for bar in (progress._bar(quiet), progress._NoBar(quiet)):
        with bar as drawn:
            task = drawn.add_task("backup x", total=None)
            drawn.update(task, completed=5, total=None, description="backup x Running")
        shown.append(capsys.readouterr().out)
    assert shown[0] == shown[1] == ("" if quiet else "\n")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")  # then rich decides
    assert progress.draws_a_bar(False) and not progress.draws_a_bar(True)

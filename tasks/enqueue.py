"""Sending a task through Celery, and hearing that it ended: what the API and the CLI
hand to operations.jobs (`celery_enqueue`) and to the CLI's progress bars (`wait_for_task`)."""

import logging
import time

log = logging.getLogger(__name__)


def celery_enqueue(task: str, kwargs: dict[str, object], queue: str) -> str:
    """(task name, kwargs, queue) -> task id, as workers.operations.jobs.Enqueue takes it."""
    # Imported here only so the CLI and the API start without Celery's cost; tasks.app
    # never imports this module, so no cycle closes through it.
    from tasks.app import app

    return str(app.send_task(task, kwargs=kwargs, queue=queue).id)


def queue_consumers(queue: str, timeout: float = 2.0) -> int | None:
    """How many workers consume `queue` (Celery's remote control, through the broker);
    None when the broker cannot be asked. A worker busy with a long backup still answers:
    its main process consumes while its pool child works."""
    from tasks.app import app

    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception as exc:  # the broker down: say nothing rather than something wrong
        log.debug("could not ask the workers which queues they consume: %s", exc)
        return None
    return sum(
        1 for queues in replies.values() if any(entry.get("name") == queue for entry in queues)
    )


def wait_for_task(task_id: str, timeout: float) -> bool:
    """Block until the task has ended or `timeout` seconds passed; True if it ended.

    Through the result backend, whose Redis pub/sub tells of the end at once, so a
    waiting client neither lags behind the worker nor takes CPU from it by polling.
    The catalog stays the truth: the caller reads the outcome there. When the backend
    cannot say (unreachable, or results are off), this sleeps out `timeout` and
    answers False, and the caller goes on polling the catalog.
    """
    from celery.exceptions import TimeoutError as ResultTimeout

    from tasks.app import app

    try:
        app.AsyncResult(task_id).get(timeout=timeout, propagate=False)
    except ResultTimeout:
        return False
    except Exception as exc:  # a backend down is no reason to stop waiting
        log.debug("the result backend did not answer for task %s: %s", task_id, exc)
        time.sleep(timeout)
        return False
    return True

"""Sending a task through Celery: the `enqueue` the API and the CLI hand to operations.jobs."""


def celery_enqueue(task: str, kwargs: dict[str, object], queue: str) -> str:
    """(task name, kwargs, queue) -> task id, as workers.operations.jobs.Enqueue takes it."""
    # Imported here only so the CLI and the API start without Celery's cost; tasks.app
    # never imports this module, so no cycle closes through it.
    from tasks.app import app

    return str(app.send_task(task, kwargs=kwargs, queue=queue).id)

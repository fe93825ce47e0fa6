"""The allowUnsigned override as a restore row carries it from the request to the worker.

The request (operations/jobs.py) starts the row's error with ALLOW_UNSIGNED_NOTE; the
worker (operations/restore.py) reads the override from the row, so a redelivered task
keeps it, and every reader of the row sees it.
"""

ALLOW_UNSIGNED_NOTE = "allowUnsigned"


def override_note(overridden: list[str], requested_by: str | None) -> str:
    """The restore row's record of an allowUnsigned request, and of what it let through."""
    who = f" by {requested_by}" if requested_by else ""
    what = "; ".join(overridden) or "nothing needed it at request time"
    return f"{ALLOW_UNSIGNED_NOTE} requested{who}: accepted {what}"


def override_of(error: str | None) -> str | None:
    """The row's allowUnsigned note, if its error holds one (it is a note, not an error)."""
    return error if (error or "").startswith(ALLOW_UNSIGNED_NOTE) else None

"""Reading archived objects: ask the store to rehydrate each one, then wait until all read.

S3 GLACIER and DEEP_ARCHIVE objects and Azure Archive blobs cannot be read as they are: a
restore or drill of a backup kept in such a class (workers/operations/tiers.py) first
asks the store for every archived artifact at once (`ObjectStore.rehydrate`: S3
RestoreObject, Azure Set Blob Tier), so they come back side by side, then polls with a
backoff (30 s, doubling to 10 minutes) until every one reads. Progress goes to
`on_progress` (a restore's catalog row, which `backfleet restore --wait` shows) each
poll and to the log every few minutes. The wait gives up after REHYDRATION_TIMEOUT, and
never takes more than nine tenths of BACKUP_SOFT_TIME_LIMIT (the task would be stopped
there anyway, with a less helpful message): the retrieval goes on in the store, so the
same restore asked again later finds the objects readable (S3 keeps the copy
REHYDRATION_DAYS days). How long the store takes: S3 Glacier Flexible Retrieval 1-5
minutes (Expedited), 3-5 hours (Standard), 5-12 hours (Bulk); Deep Archive 12 and 48
hours (Standard, Bulk); Azure Archive up to 15 hours (Standard), under one (High).
"""

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from workers.errors import PermanentError
from workers.settings import Settings
from workers.stores.base import ObjectStore
from workers.timestamps import format_duration

log = logging.getLogger(__name__)

FIRST_POLL = 30.0  # seconds before the first look again
MAX_POLL = 600.0  # the backoff's ceiling
LOG_EVERY = 300.0  # a log line at most this often while waiting
TASK_SHARE = 0.9  # of BACKUP_SOFT_TIME_LIMIT: the rest is for reading the bytes
Progress = Callable[[str | None], None]  # what the wait is at; None: it is over


class RehydrationTimeout(PermanentError):
    """Archived objects did not come back in time; their retrieval goes on in the store."""


@dataclass(frozen=True)
class RehydrationWait:
    """How long a wait may last, and what bounds it (a sentence for the error)."""

    timeout: float  # seconds
    bound: str  # what limits the wait, said when it gives up
    tier: str = "Standard"
    first_poll: float = FIRST_POLL
    max_poll: float = MAX_POLL
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def from_settings(cls, settings: Settings) -> "RehydrationWait":
        timeout = float(settings.rehydration_timeout_seconds)
        bound = f"a restore waits at most REHYDRATION_TIMEOUT ({settings.rehydration_timeout})"
        task = settings.backup_soft_time_limit * TASK_SHARE
        if task < timeout:
            timeout = task
            bound = (
                "a restore waits at most nine tenths of BACKUP_SOFT_TIME_LIMIT "
                f"({format_duration(settings.backup_soft_time_limit)}), which stops it before "
                f"REHYDRATION_TIMEOUT ({settings.rehydration_timeout}): raise it (with "
                "BACKUP_TIME_LIMIT and CELERY_VISIBILITY_TIMEOUT) to wait longer"
            )
        return cls(timeout=timeout, bound=bound, tier=settings.rehydration_tier)


# The copy sweep to the secondary store asks for archived objects and never waits.
NO_WAIT = RehydrationWait(0.0, "the copy sweep does not wait: a later sweep copies the backup")


def wait_until_readable(
    store: ObjectStore,
    keys: Collection[str],
    wait: RehydrationWait,
    on_progress: Progress | None = None,
) -> dict[str, str]:
    """Return once every object of `keys` can be read; RehydrationTimeout if some cannot
    within the wait. Returns the objects the rehydration moved out of their archive class,
    with the class each is in now (an Azure blob: Hot), for the catalog to record; an S3
    object stays in its class (S3 serves a temporary copy). A store without archive
    classes is not asked anything."""
    if not store.archive_classes:
        return {}
    archived = {key: store.storage_class_of(key) for key in keys}
    archived = {key: cls for key, cls in archived.items() if cls in store.archive_classes}
    if not archived:
        return {}
    report = on_progress or (lambda message: None)
    start = wait.clock()
    pending = sorted(key for key in archived if not store.rehydrate(key))
    poll, logged = wait.first_poll, start - LOG_EVERY
    while pending:
        elapsed = wait.clock() - start
        classes = ", ".join(sorted({archived[key] for key in pending}))
        message = (
            f"waiting for {len(pending)} of {len(archived)} archived objects to be rehydrated "
            f"from {classes} ({wait.tier}; asked {format_duration(elapsed)} ago, "
            f"gives up after {format_duration(wait.timeout)})"
        )
        if elapsed >= wait.timeout:
            report(None)
            raise RehydrationTimeout(
                f"{len(pending)} of {len(archived)} archived objects ({classes}) were not "
                f"rehydrated after {format_duration(elapsed)}: {wait.bound}. The store goes "
                f"on bringing them back: ask again once it is done (first: {pending[0]})"
            )
        report(message)
        if wait.clock() - logged >= LOG_EVERY:
            log.info("%s", message)
            logged = wait.clock()
        wait.sleep(min(poll, max(wait.timeout - elapsed, 0.0)))
        poll = min(poll * 2, wait.max_poll)
        pending = [key for key in pending if not store.rehydrate(key)]
    report(None)
    log.info(
        "%d archived objects are readable (after %s)",
        len(archived),
        format_duration(wait.clock() - start),
    )
    now_in = {key: store.storage_class_of(key) for key in archived}
    return {key: cls for key, cls in now_in.items() if cls not in store.archive_classes}

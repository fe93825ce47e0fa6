"""A pass over a namespace holds its retention lock: taken, or the namespace skipped
this pass; what a lost lock leaves undone is recorded on the plan."""

import logging

from workers.fleet import Fleet
from workers.operations.locks import NamespaceBusy, NamespaceLock, retention_lock
from workers.operations.retention.plan import RetentionPlan

log = logging.getLogger(__name__)


def take_retention_lock(fleet: Fleet, namespace: str) -> NamespaceLock | RetentionPlan:
    """The namespace's retention lock, or a plan that says why the namespace is skipped."""
    lock = retention_lock(fleet.settings, namespace, label="retention")
    try:
        lock.acquire()
    except NamespaceBusy as busy:  # a test restore, or another pass: the next pass does it
        log.warning("retention of %s skipped this pass: %s", namespace, busy)
        return RetentionPlan(namespace, skipped=str(busy))
    return lock


def give_up(plan: RetentionPlan, stamps: list[str], why: str) -> None:
    for stamp in stamps:
        plan.failed[stamp] = why
        plan.delete.pop(stamp, None)

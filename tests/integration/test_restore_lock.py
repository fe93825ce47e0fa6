"""A restore and its namespace lock, on a real Redis: tasks.restore.run_restore in-process.

A restore whose lock expires or is taken mid-way stops before it commits (the
target untouched) and is Failed with the reason; a redelivered finished
restore records nothing again; an attempt overtaken by a newer one records nothing.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.restore import run_restore
from tests.restore_fleet import (
    RestoreCase,
    leftovers,
    make_case,
    new_restore,
    restore_events,
    sqlite_rows,
    tree,
)
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import FAILED, RUNNING, SUCCESS, Restore
from workers.fleet import current_fleet, reset_fleet
from workers.operations.locks import PREFIX
from workers.operations.restore import run_restore as perform_restore
from workers.repository.manifest import MANIFEST_NAME

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
LOCK = PREFIX + "app"


@pytest.fixture
def case(
    tmp_path: Path, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RestoreCase]:
    made = make_case(tmp_path, redis_server.url, monkeypatch)
    yield made
    made.redis.delete(LOCK)
    made.redis.close()
    reset_fleet()
    dispose_engines()


def row(case: RestoreCase, restore_id: int) -> Restore:
    with session_scope(case.catalog) as session:
        found = session.get(Restore, restore_id)
        assert found is not None
        session.expunge(found)
        return found


@pytest.mark.parametrize("how", ["expired", "taken"])
def test_a_restore_that_loses_its_lock_stops_before_committing_and_fails(
    case: RestoreCase, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    store = current_fleet().store
    read = store.open_read

    def lose_the_lock_then_read(key: str, *args: Any, **kwargs: Any) -> Any:
        if not key.endswith(MANIFEST_NAME):  # mid-restore: an artifact is being read
            if how == "expired":  # a worker frozen past the TTL; nobody took it (yet)
                case.redis.delete(LOCK)
            else:
                case.redis.set(LOCK, "backup intruder|token", ex=60)
        return read(key, *args, **kwargs)

    monkeypatch.setattr(store, "open_read", lose_the_lock_then_read)
    restore_id = new_restore(case, ["files", "db"])
    rows_before = sqlite_rows(case.database)

    result = run_restore.apply(kwargs={"restore_id": restore_id}).get()

    finished = row(case, restore_id)
    assert result["status"] == finished.status == FAILED
    assert finished.error is not None
    assert "the lock of namespace app was lost" in finished.error
    assert ("expired or was deleted" if how == "expired" else "taken by backup intruder") in (
        finished.error
    )
    assert "stopped before files was changed" in finished.error
    assert tree(case.files) == case.changed  # untouched, and so is the next service
    assert sqlite_rows(case.database) == rows_before
    assert leftovers(case) == []
    (event,) = restore_events(case)
    assert event.request_params["status"] == FAILED
    if how == "taken":  # the intruder's lock is not released by the stopped restore
        assert case.redis.get(LOCK) == b"backup intruder|token"


def test_a_redelivered_finished_restore_records_its_audit_event_once(case: RestoreCase) -> None:
    restore_id = new_restore(case, ["files"])
    assert run_restore.apply(kwargs={"restore_id": restore_id}).get()["status"] == SUCCESS
    assert tree(case.files) == case.backed_up
    # The broker delivers the finished task again (a lost acknowledgement).
    assert run_restore.apply(kwargs={"restore_id": restore_id}).get()["status"] == SUCCESS
    (event,) = restore_events(case)
    assert event.request_params["status"] == SUCCESS
    assert row(case, restore_id).attempts == 1


def test_an_attempt_overtaken_by_a_newer_one_records_nothing(case: RestoreCase) -> None:
    """The finish is a compare-and-set on (Running, this attempt): the newer attempt reports."""
    restore_id = new_restore(case, ["db"])

    def a_newer_attempt_starts() -> None:  # e.g. redelivered while this one was frozen
        with session_scope(case.catalog) as session:
            newer = session.get(Restore, restore_id)
            assert newer is not None
            newer.attempts += 1

    status = perform_restore(
        current_fleet(), restore_id=restore_id, check_lock=a_newer_attempt_starts
    )

    assert status == RUNNING  # the newer attempt's to finish
    after = row(case, restore_id)
    assert (after.status, after.finished_at, after.error) == (RUNNING, None, None)
    assert restore_events(case) == []

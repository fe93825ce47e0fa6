"""Which retained backups a due service's drill takes (workers/operations/drill_plan.py):
the newest never drilled first, failed ones again, and enough of the longest-waiting ones
that every retained backup is drilled within TEST_RESTORE_PERIOD. Time is injected."""

from datetime import UTC, datetime, timedelta

from workers.catalog.recoveries import DrillCandidate
from workers.operations.drill_plan import pick_backups
from workers.timestamps import format_timestamp

DAY = 86400
T0 = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)


def backups(count: int, *, before: datetime = T0) -> list[DrillCandidate]:
    """`count` retained backups a day apart, the newest a day before `before`, newest first."""
    return [
        DrillCandidate(i, format_timestamp(before - timedelta(days=count - i + 1)), None, None)
        for i in range(count, 0, -1)
    ]


def drilled(candidates: list[DrillCandidate], picks: list[DrillCandidate], at: datetime) -> None:
    for pick in picks:
        index = candidates.index(pick)
        candidates[index] = DrillCandidate(pick.backup_id, pick.timestamp, at, "Success")


def test_each_retained_backup_is_drilled_once_within_the_period() -> None:
    retained = backups(10)
    seen: list[list[int]] = []
    last: dict[int, datetime] = {}
    for run in range(8):  # weekly runs over two 28-day periods
        now = T0 + timedelta(days=7 * run)
        picks = pick_backups(retained, cadence=7 * DAY, period=28 * DAY, seen=T0, now=now)
        seen.append([pick.backup_id for pick in picks])
        for pick in picks:  # never more than a period between two drills of a backup
            assert now - last.get(pick.backup_id, T0) <= timedelta(days=28)
            last[pick.backup_id] = now
        drilled(retained, picks, now)
    # ceil(10 / 4) = 3 a run; the first of each run is the newest never drilled.
    assert [ids[0] for ids in seen[:4]] == [10, 9, 8, 7]
    assert [len(ids) for ids in seen[:3]] == [3, 3, 3]
    first_three = [i for ids in seen[:3] for i in ids]
    assert len(first_three) == len(set(first_three))  # none twice before all were drilled
    assert set(i for ids in seen[:4] for i in ids) == set(range(1, 11))  # all in 28 days
    assert all(T0 + timedelta(days=56) - at <= timedelta(days=28) for at in last.values())


def test_one_backup_a_run_when_the_period_holds_a_run_per_backup() -> None:
    retained = backups(4)
    picks = pick_backups(retained, cadence=DAY, period=30 * DAY, seen=T0, now=T0)
    assert [pick.backup_id for pick in picks] == [4]  # the newest, never drilled


def test_all_drilled_takes_the_one_drilled_longest_ago() -> None:
    retained = backups(3)
    for offset, backup_id in ((3, 1), (1, 2), (2, 3)):  # drilled 3, 1 and 2 days ago
        index = [c.backup_id for c in retained].index(backup_id)
        retained[index] = DrillCandidate(
            backup_id, retained[index].timestamp, T0 - timedelta(days=offset), "Success"
        )
    picks = pick_backups(retained, cadence=DAY, period=30 * DAY, seen=T0, now=T0)
    assert [pick.backup_id for pick in picks] == [1]


def test_a_failed_backup_is_drilled_again_and_one_about_to_wait_a_period_is_forced() -> None:
    retained = backups(5)
    at = {5: T0 - timedelta(days=1), 4: T0 - timedelta(days=2), 2: T0 - timedelta(days=27)}
    status = {4: "Failed"}
    retained = [
        DrillCandidate(c.backup_id, c.timestamp, at.get(c.backup_id), status.get(c.backup_id))
        if c.backup_id in at
        else c
        for c in retained
    ]
    # A 30-day period and a weekly cadence give 5 runs, quota 1: the newest never drilled
    # (3), the failed one (4), and backup 2, drilled 27 days ago: by the next run (7 days
    # on) it would have waited a whole period. Backup 1 (never drilled, taken 6 days ago)
    # can wait.
    picks = pick_backups(retained, cadence=7 * DAY, period=30 * DAY, seen=T0, now=T0)
    assert [pick.backup_id for pick in picks] == [3, 4, 2]


def test_nothing_retained_nothing_picked() -> None:
    assert pick_backups([], cadence=DAY, period=30 * DAY, seen=T0, now=T0) == []

"""The moment a drill of a pitr service's base backup goes to (pitr/drill_moment.py), and
how its recovery is judged (pitr/replay.py): pure functions, fed windows and facts."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from workers.errors import IntegrityError
from workers.pitr.drill_moment import choose_moment, draw, moment_range
from workers.pitr.replay import Replay, _stopped_before, judge_replay
from workers.pitr.window import BaseBackup, Window

T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def base(stamp: str, hours: float) -> BaseBackup:
    end = T0 + timedelta(hours=hours)
    return BaseBackup(stamp, "7", 0, 0, end - timedelta(minutes=1), end)


def window(*bases: BaseBackup, latest_hours: float = 30) -> Window:
    return Window(
        "app",
        "db",
        earliest=bases[0].end_time,
        latest=T0 + timedelta(hours=latest_hours),
        bases=bases,
    )


OLD, NEW = base("2026-03-02t03-00-00", 0), base("2026-03-03t03-00-00", 24)


def test_each_backup_serves_the_moments_up_to_the_next_ones_consistent_point() -> None:
    found = window(OLD, NEW)
    assert moment_range(found, OLD.timestamp) == (OLD.end_time, NEW.end_time)
    assert moment_range(found, NEW.timestamp) == (NEW.end_time, found.latest)


def test_no_window_or_a_backup_the_wal_does_not_continue_from_says_why() -> None:
    closed = Window("app", "db", reason="no successful base backup since the last WAL gap")
    assert moment_range(closed, OLD.timestamp) == (
        "no recoverable window: no successful base backup since the last WAL gap"
    )
    why = moment_range(window(NEW), OLD.timestamp)
    assert isinstance(why, str)
    assert why.startswith(f"the shipped WAL does not continue from backup {OLD.timestamp}")
    assert "earliest 2026-03-03T03:00:00Z" in why
    moment = choose_moment(closed, OLD.timestamp, random.Random(1))
    assert moment.target is None and moment.skipped is not None


def test_the_draw_is_uniform_in_the_range_and_fixed_by_the_seed() -> None:
    low, high = OLD.end_time, NEW.end_time
    first = [draw(random.Random(42), low, high) for _ in range(3)]
    assert first[0] == first[1] == first[2]  # the same seed, the same moment
    fraction = random.Random(42).random()
    assert first[0] == low + (high - low) * fraction
    rng = random.Random(7)
    moments = [draw(rng, low, high) for _ in range(500)]
    assert all(low <= m < high for m in moments)
    assert len(set(moments)) == 500
    assert min(moments) < low + (high - low) / 10 and max(moments) > high - (high - low) / 10
    assert draw(rng, high, high) == high  # an empty range: its one moment


def test_a_backup_whose_drill_failed_is_drilled_again_to_the_same_moment() -> None:
    found = window(OLD, NEW)
    failed_at = OLD.end_time + timedelta(hours=3)
    again = choose_moment(found, OLD.timestamp, random.Random(3), failed_at=failed_at)
    assert again.target == failed_at
    # Out of range now (e.g. a moment of the newest backup, before a newer one came): drawn.
    later = NEW.end_time + timedelta(hours=1)
    drawn = choose_moment(found, OLD.timestamp, random.Random(3), failed_at=later)
    assert drawn.target == draw(random.Random(3), OLD.end_time, NEW.end_time)


TARGET = T0 + timedelta(hours=5)


def replay(**changes: object) -> Replay:
    facts: dict[str, object] = {
        "promoted": True,
        "timeline": 2,
        "last_commit": TARGET - timedelta(seconds=1),
        "stopped_before": TARGET + timedelta(seconds=1),
        "end_of_wal": False,
    }
    facts.update(changes)
    return Replay(**facts)  # type: ignore[arg-type]


def test_a_recovery_that_reached_the_target_passes() -> None:
    judge_replay(replay(), TARGET)
    judge_replay(replay(last_commit=TARGET), TARGET)  # inclusive: a commit at the moment
    judge_replay(replay(last_commit=None), TARGET)  # nothing between the base and the target
    judge_replay(replay(stopped_before=None, end_of_wal=True), TARGET)  # all the WAL replayed


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"promoted": False}, "did not promote"),
        ({"last_commit": TARGET + timedelta(microseconds=1)}, "replayed a transaction of"),
        ({"stopped_before": None}, "without stopping before a transaction after it"),
        ({"stopped_before": TARGET}, "not after the target"),
    ],
)
def test_a_recovery_that_missed_the_target_fails(changes: dict[str, object], says: str) -> None:
    with pytest.raises(IntegrityError, match=says):
        judge_replay(replay(**changes), TARGET)
    with pytest.raises(IntegrityError, match="left no evidence"):
        judge_replay(None, TARGET)


def test_the_stop_is_read_from_the_servers_log() -> None:
    log = (
        "LOG:  consistent recovery state reached at 0/B00100\n"
        "LOG:  recovery stopping before commit of transaction 729, "
        "time 2026-12-08 00:26:10.560472+00\n"
        "LOG:  last completed transaction was at log time 2026-12-08 00:26:10.359389+00\n"
    )
    assert _stopped_before(log) == datetime(2026, 12, 8, 0, 26, 10, 560472, tzinfo=UTC)
    aborted = "LOG:  recovery stopping before abort of transaction 9, time 2026-12-08 02:26:10+02\n"
    assert _stopped_before(aborted) == datetime(2026, 12, 8, 0, 26, 10, tzinfo=UTC)
    assert _stopped_before("LOG:  redo done at 0/B00100\n") is None

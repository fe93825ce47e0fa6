"""Where a scratch server's recovery to a moment ended, and whether that is the moment.

Read once the server promoted (base_restore.py), judged by a drill (drill_moment.py):

- `promoted`: the server left recovery (`pg_is_in_recovery()` false), on `timeline`;
- `last_commit`: `pg_last_xact_replay_timestamp()`, the commit (or abort) time of the
  last transaction replayed, which stays fixed once recovery is over (no
  track_commit_timestamp needed); None when this recovery replayed none;
- `stopped_before`: the time of the first transaction *after* the target, at which the
  replay stopped (the server's log, lc_messages C: `recovery stopping before commit of
  transaction 745, time 2026-03-02 14:32:00.1+00`): the proof that the replay reached
  the target rather than stopping short of it;
- `end_of_wal`: there was none (PostgreSQL ended the recovery "before configured recovery
  target was reached") and every WAL file fetched was replayed instead.

So a recovery reached `target` when it promoted, its last commit is at or before it, and
it either stopped before a commit after it or replayed WAL that holds none.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from workers.errors import IntegrityError
from workers.timestamps import format_moment

if TYPE_CHECKING:
    import psycopg

STOPPING = re.compile(
    r"recovery stopping before (?:commit|abort) of transaction \d+, time (?P<time>[0-9:. +-]+)"
)


@dataclass(frozen=True)
class Replay:
    promoted: bool
    timeline: int
    last_commit: datetime | None
    stopped_before: datetime | None
    end_of_wal: bool


def read_replay(conn: "psycopg.Connection[Any]", log_text: str, *, end_of_wal: bool) -> Replay:
    """The facts of a recovery that just ended, from the server and its log."""
    row = conn.execute("SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()").fetchone()
    assert row is not None
    in_recovery, last = row
    walfile = None
    if not in_recovery:  # pg_current_wal_lsn() is refused during recovery
        named = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
        walfile = named[0] if named else None
    return Replay(
        promoted=not in_recovery,
        timeline=int(str(walfile)[:8], 16) if walfile else 0,
        last_commit=last.astimezone(UTC) if last is not None else None,
        stopped_before=None if end_of_wal else _stopped_before(log_text),
        end_of_wal=end_of_wal,
    )


def _stopped_before(log_text: str) -> datetime | None:
    """The time on the last `recovery stopping before …` line (`2026-03-02 14:32:00.1+00`:
    the server's own time zone, which the offset names)."""
    found = [match.group("time").strip() for match in STOPPING.finditer(log_text)]
    if not found:
        return None
    try:
        return datetime.fromisoformat(found[-1]).astimezone(UTC)
    except ValueError:
        return None


def judge_replay(replay: Replay | None, target: datetime) -> None:
    """IntegrityError unless the recovery reached `target` (see the module doc)."""
    moment = format_moment(target)
    if replay is None:
        raise IntegrityError(f"the scratch server's recovery to {moment} left no evidence")
    if not replay.promoted:
        raise IntegrityError(f"the scratch server did not promote after its recovery to {moment}")
    if replay.last_commit is not None and replay.last_commit > target:
        raise IntegrityError(
            f"the recovery to {moment} replayed a transaction of "
            f"{format_moment(replay.last_commit)}, after it"
        )
    if replay.end_of_wal:
        return  # every WAL file fetched replayed, and it holds no commit after the target
    if replay.stopped_before is None:
        raise IntegrityError(
            f"the recovery to {moment} ended without stopping before a transaction after it "
            "(the server's log says no `recovery stopping before`)"
        )
    if replay.stopped_before <= target:
        raise IntegrityError(
            f"the recovery to {moment} stopped before a transaction of "
            f"{format_moment(replay.stopped_before)}, not after the target"
        )

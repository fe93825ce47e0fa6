"""A drill of a `pitr` service's base backup recovers it to a random moment of the
recoverable window, through the restore-to-a-moment path (pitr/to_time.py: the WAL
fetched and verified into the scratch, recovery to the moment, the dump into the drill's
scratch database), and checks that the recovery reached that moment (pitr/replay.py).

It replaces the drill to the backup's consistent point rather than running beside it:
each drill costs a scratch server and room for the whole cluster, and PostgreSQL does not
stop a recovery to a moment before the consistent point, so the drill to a moment proves
all the other one did (the artifact verified, unpacked, recovered to consistency, dumped,
restored, counted) and the WAL after it too. The drill to the consistent point is left
for the base backups a moment cannot be reached from (`skipped` says why): no window
(nothing shipped, or a gap since), or the WAL does not continue from that backup.

Which moment: one of those the drilled backup serves, the moments a restore to a moment
would start from it (pitr/window.py `base_for`): from its consistent point (`end_time`)
to the next base backup's, the newest one's to the window's latest. Drawn from `rng`
(seeded by the caller: a test fixes it), uniformly. The drill plan (operations/
drill_plan.py) drills every retained backup within TEST_RESTORE_PERIOD, so the drills
reach every part of the window; each replays at most one backup interval's WAL, as a
restore would. A backup whose latest drill (to a moment) failed is drilled again to the
same moment while the window still holds it, so a draw that happens to miss a damaged
WAL file does not pass for a repair.
"""

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from workers.catalog import recoveries
from workers.catalog.db import session_scope
from workers.catalog.models import FAILED
from workers.fleet import Fleet
from workers.pitr.replay import judge_replay
from workers.pitr.to_time import replay_to
from workers.pitr.window import Window, load_window
from workers.sources import Source
from workers.timestamps import format_moment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrillMoment:
    target: datetime | None = None  # the moment drilled to; None: the consistent point
    skipped: str | None = None  # why not to a moment


def moment_range(window: Window, timestamp: str) -> tuple[datetime, datetime] | str:
    """The moments backup `timestamp` serves in `window` (see the module doc), or why none."""
    if window.earliest is None or window.latest is None:
        return f"no recoverable window: {window.reason or 'nothing shipped'}"
    base = next((base for base in window.bases if base.timestamp == timestamp), None)
    if base is None:
        return (
            f"the shipped WAL does not continue from backup {timestamp} "
            f"(the recoverable window: {window.describe()})"
        )
    later = [other.end_time for other in window.bases if other.end_time > base.end_time]
    return base.end_time, min([*later, window.latest])


def draw(rng: random.Random, low: datetime, high: datetime) -> datetime:
    """A moment in [low, high), uniformly (low itself when the range is empty)."""
    return low + (high - low) * rng.random() if high > low else low


def choose_moment(
    window: Window,
    timestamp: str,
    rng: random.Random,
    *,
    failed_at: datetime | None = None,
) -> DrillMoment:
    """The moment to drill backup `timestamp` to; `failed_at`: the moment its latest drill
    failed at, drilled again while it is still in range."""
    found = moment_range(window, timestamp)
    if isinstance(found, str):
        return DrillMoment(skipped=found)
    low, high = found
    if failed_at is not None and low <= failed_at <= high:
        return DrillMoment(target=failed_at)
    return DrillMoment(target=draw(rng, low, high))


def aim_drill(
    source: Source,
    fleet: Fleet,
    *,
    namespace: str,
    service: str,
    timestamp: str,
    rng: random.Random,
    on_read: Callable[[int], None],
) -> DrillMoment:
    """Choose the moment the drill of `service` from base backup `timestamp` goes to, and
    set `source` (its BaseBackupRestore) to fetch the WAL and recover to it."""
    with session_scope(fleet.settings.database_url) as session:
        window = load_window(session, namespace=namespace, service=service)
        last = recoveries.last_drill_of(
            session, namespace=namespace, service=service, timestamp=timestamp
        )
        failed_at = last.target_time if last is not None and last.status == FAILED else None
    moment = choose_moment(window, timestamp, rng, failed_at=failed_at)
    if moment.target is None:
        log.info(
            "drill of %s/%s %s: to its consistent point: %s",
            namespace,
            service,
            timestamp,
            moment.skipped,
        )
        return moment
    log.info(
        "drill of %s/%s %s: to %s (window %s)",
        namespace,
        service,
        timestamp,
        format_moment(moment.target),
        window.describe(),
    )

    def say(text: str | None) -> None:
        if text:
            log.info("drill of %s/%s: %s", namespace, service, text)

    replay_to(
        source,
        fleet,
        namespace=namespace,
        service=service,
        timestamp=timestamp,
        target=moment.target,
        say=say,
        on_read=on_read,
    )
    return moment


def replayed_to(source: Source, moment: DrillMoment) -> datetime | None:
    """The last transaction the recovery replayed; IntegrityError unless it reached the
    moment (pitr/replay.py). Nothing to judge for a drill to the consistent point."""
    if moment.target is None:
        return None
    replay = getattr(source, "replay", None)  # a BaseBackupRestore's (replay_to checked it is)
    judge_replay(replay, moment.target)
    return replay.last_commit if replay is not None else None

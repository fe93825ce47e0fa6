"""Which backups each service's drill takes on a test-restore run (RESTORE_TEST_SCHEDULE).

A service is due when its last drill finished longer ago than its `test_restore`
cadence (TEST_RESTORE_EVERY by default; less a tenth of it, at most an hour:
monitoring.recovery.due_after); a service never drilled is due at once. A due
service's run drills, of its retained backups (successful, holding its artifact):

1. first the newest one never drilled, else the one drilled longest ago: the
   freshest evidence of what restoring it takes;
2. then every one whose latest drill failed, again, until it passes (or is deleted);
3. then those that have waited longest for a drill — since their last one or, never
   drilled, since they were taken (or the fleet first saw the service, if later) —
   as many as make ceil(retained / runs per period) in all (runs per period:
   TEST_RESTORE_PERIOD / cadence, at least one), and any more that would otherwise
   wait a whole TEST_RESTORE_PERIOD by the service's next run.

So every retained backup is drilled at least once per TEST_RESTORE_PERIOD, and a
service whose period holds as many runs as it has backups drills one per run.
A service that cannot be drilled (monitoring.recovery says why) is never planned.

Backups whose artifacts of the service are archived (the store's archive classes:
S3 Glacier Flexible Retrieval and Deep Archive, Azure Archive) are not drilled by these
runs: each drill would pay a retrieval and wait up to hours for it (longer than a
task's time limit), and the blob would come back out of its class. Their verification
is by the store's metadata (operations/verify.py); a drill of one is asked for by name,
`backfleet test-restore --namespace NS --timestamp TS`.
"""

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from workers.catalog import recoveries, services_seen
from workers.catalog.db import Session, session_scope
from workers.catalog.models import DRILL, FAILED
from workers.catalog.recoveries import DrillCandidate
from workers.fleet import Fleet
from workers.monitoring.recovery import due_after
from workers.settings import parse_duration
from workers.sources import source_class
from workers.timestamps import parse_timestamp


def plan_drills(fleet: Fleet, *, namespace: str, now: datetime) -> dict[str, list[str]]:
    """{backup timestamp: its services to drill}, newest backup first."""
    period = parse_duration(fleet.settings.test_restore_period)
    plan: dict[str, list[str]] = {}
    specs = fleet.config.services_of(namespace)
    with session_scope(fleet.settings.database_url) as session:
        seen = services_seen.first_seen(
            session, namespace=namespace, services=list(specs), moment=now
        )
        for service, spec in sorted(specs.items()):
            if source_class(spec.kind).restore_test_unavailable(spec) is not None:
                continue
            cadence = fleet.config.policy_of(namespace, service, fleet.settings).test_restore
            if not _due(session, namespace, service, cadence, now):
                continue
            candidates = recoveries.drill_candidates(
                session,
                namespace=namespace,
                service=service,
                archived=fleet.store.archive_classes,
            )
            for pick in pick_backups(
                candidates, cadence=cadence, period=period, seen=seen[service], now=now
            ):
                plan.setdefault(pick.timestamp, []).append(service)
    return {stamp: plan[stamp] for stamp in sorted(plan, reverse=True)}


def _due(session: Session, namespace: str, service: str, cadence: int, now: datetime) -> bool:
    last = recoveries.last_run(session, namespace=namespace, service=service, trigger=DRILL)
    return last is None or now - last.finished_at >= due_after(cadence)


def pick_backups(
    candidates: Sequence[DrillCandidate],
    *,
    cadence: int,
    period: int,
    seen: datetime,
    now: datetime,
) -> list[DrillCandidate]:
    """A due service's drills this run, from its retained backups (newest first)."""
    if not candidates:
        return []
    never = [c for c in candidates if c.drilled_at is None]

    def waiting(candidate: DrillCandidate) -> tuple[datetime, bool, str]:
        """Since when it waits for a drill; on a tie, never drilled first, then the older."""
        since = candidate.drilled_at or max(parse_timestamp(candidate.timestamp), seen)
        return since, candidate.drilled_at is not None, candidate.timestamp

    first = never[0] if never else min(candidates, key=waiting)
    picks = [first]
    picks += [c for c in candidates if c is not first and c.drill_status == FAILED]
    quota = math.ceil(len(candidates) / max(1, period // cadence))
    next_run = now + timedelta(seconds=cadence)
    for candidate in sorted((c for c in candidates if c not in picks), key=waiting):
        if len(picks) >= quota and waiting(candidate)[0] + timedelta(seconds=period) > next_run:
            break  # the others waited less: the next runs reach them in time
        picks.append(candidate)
    return picks

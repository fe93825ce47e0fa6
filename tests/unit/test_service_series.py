"""Per-service retention series (workers/operations/service_series.py), without I/O."""

from datetime import UTC, datetime, timedelta

from workers.operations import gfs
from workers.operations.service_series import (
    UNKNOWN,
    Candidate,
    ServicePolicies,
    select,
    why_not_kept,
)
from workers.timestamps import format_timestamp, parse_timestamp

START = datetime(2026, 3, 1, tzinfo=UTC)  # a Sunday
HOURS_1 = gfs.Policy(hourly=1, daily=0, weekly=0, monthly=0, yearly=0)
HOURS_2 = gfs.Policy(hourly=2, daily=0, weekly=0, monthly=0, yearly=0)
WEEKS_2 = gfs.Policy(hourly=0, daily=0, weekly=2, monthly=0, yearly=0)


def at(moment: datetime, *services: str, verified: bool = False) -> Candidate:
    return Candidate(format_timestamp(moment), services, verified_good=verified)


def test_a_weekly_service_keeps_its_weeks_beside_an_hourly_one() -> None:
    db = [at(START + timedelta(hours=h), "db") for h in range(21 * 24)]
    ca = [at(START + timedelta(weeks=w, hours=4, minutes=30), "step-ca") for w in range(3)]
    policies = ServicePolicies({"db": HOURS_2, "step-ca": WEEKS_2}, fallback=gfs.Policy())
    selection = select(db + ca, policies)
    assert set(selection.keep) == {
        db[-1].timestamp,
        db[-2].timestamp,
        *(c.timestamp for c in ca[1:]),
    }
    assert selection.keep[ca[1].timestamp] == ["step-ca: weekly"]
    assert selection.keep[ca[2].timestamp] == ["newest backup of service step-ca"]
    assert selection.keep[db[-2].timestamp] == ["db: hourly"]
    assert selection.policies == {"db": HOURS_2.describe(), "step-ca": WEEKS_2.describe()}
    # One series for the namespace (the code before) lets the hourly backups take every
    # weekly slot: only the newest backup of the week survives, a database one.
    one = gfs.select([(c.timestamp, parse_timestamp(c.timestamp)) for c in db + ca], WEEKS_2)
    assert not {c.timestamp for c in ca} & set(one)


def test_a_backup_goes_only_when_no_service_it_holds_keeps_it() -> None:
    both = at(START, "db", "files")
    dbs = [at(START + timedelta(hours=h), "db") for h in (1, 2)]
    policies = ServicePolicies({"db": HOURS_1, "files": HOURS_1}, fallback=gfs.Policy())
    selection = select([both, *dbs], policies)
    # `db`'s series moved on, but this is still the newest copy of `files`.
    assert selection.keep[both.timestamp] == ["newest backup of service files"]
    assert set(selection.keep) == {both.timestamp, dbs[1].timestamp}
    assert why_not_kept(dbs[0], policies, by="retention") == (
        f"not kept by retention of any service it holds: db ({HOURS_1.describe()})"
    )
    assert why_not_kept(both, policies, by="retention").endswith(
        f"db ({HOURS_1.describe()}); files ({HOURS_1.describe()})"
    )


def test_the_newest_verified_good_backup_is_kept_per_service() -> None:
    db = [at(START + timedelta(hours=h), "db", verified=h in (1, 2)) for h in range(6)]
    files = [at(START + timedelta(hours=h, minutes=30), "files", verified=h == 0) for h in range(3)]
    selection = select(db + files, ServicePolicies({}, fallback=HOURS_1))
    assert selection.keep[db[2].timestamp] == ["newest verified-good backup of service db"]
    assert selection.keep[files[0].timestamp] == ["newest verified-good backup of service files"]
    assert db[1].timestamp not in selection.keep  # an older verified-good one is not
    newest = at(START + timedelta(hours=9), "db", verified=True)
    both = select([*db, newest], ServicePolicies({}, fallback=HOURS_1)).keep[newest.timestamp]
    assert both == ["newest backup of service db", "newest verified-good backup of service db"]


def test_other_series_take_the_fallback_and_say_so() -> None:
    note = "not in the services file: the namespace's policy"
    policies = ServicePolicies({"db": HOURS_1}, fallback=HOURS_2, fallback_note=note)
    old = [at(START + timedelta(hours=h), "old") for h in range(4)]
    unknown = [at(START + timedelta(hours=h, minutes=5)) for h in range(3)]
    selection = select(old + unknown, policies)
    assert selection.policies["old"] == f"{HOURS_2.describe()}; {note}"
    assert selection.policies["db"] == HOURS_1.describe()  # configured, with no backup yet
    assert set(selection.keep) == {c.timestamp for c in (old[2], old[3], unknown[1], unknown[2])}
    assert selection.keep[unknown[2].timestamp] == ["newest backup whose services are unknown"]
    assert why_not_kept(unknown[0], policies, by="retention").endswith(
        f"{UNKNOWN} ({HOURS_2.describe()}; {note})"
    )

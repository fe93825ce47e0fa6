"""Retention per service: which backups each service's own GFS policy keeps.

A namespace's backups are taken on several schedules (a service's own `schedule`,
onlyConfig requests, the regular full backup), so a backup holds the artifacts of
some of its services. Each service has its own series: every candidate backup that
holds its artifact, whatever kind of backup it is. GFS (gfs.py) runs over each
series with that service's policy, so an hourly database no longer fills the
slots of a weekly service. A backup is kept when any series keeps it; it goes only
when no policy of any service it holds keeps it.

Full and onlyConfig backups are no longer two series: an onlyConfig backup's
artifact of a service is as good a copy of it as a full backup's, and it holds no
artifact of the other services, so it never stands in for them (which is what
the old split was for).

In each series, whatever the counts say, the newest backup is kept (the last copy
of a service never goes), and so is the newest whose last verification
succeeded. A series whose service is no longer configured takes the fallback
policy (the namespace's); backups whose services cannot be known (a secondary
store's backup without a catalog row and with a manifest that cannot be
authenticated) form one series under the fallback too.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from workers.operations import gfs
from workers.timestamps import parse_timestamp

# The series of backups whose services are unknown (no DNS label has parentheses).
UNKNOWN = "(unknown services)"


@dataclass(frozen=True)
class Candidate:
    """A backup retention may delete, and what it holds."""

    timestamp: str
    services: tuple[str, ...]  # whose artifacts it holds; empty: unknown
    verified_good: bool = False  # its last verification succeeded

    def series(self) -> tuple[str, ...]:
        return self.services or (UNKNOWN,)


@dataclass(frozen=True)
class ServicePolicies:
    """The policy of each configured service, and the fallback every other series takes."""

    services: Mapping[str, gfs.Policy]
    fallback: gfs.Policy
    fallback_note: str | None = None  # said of a series that takes the fallback

    def of(self, series: str) -> gfs.Policy:
        return self.services.get(series, self.fallback)

    def describe(self, series: str) -> str:
        if series in self.services or self.fallback_note is None:
            return self.of(series).describe()
        return f"{self.fallback.describe()}; {self.fallback_note}"


# What `Selection.keeping` holds beside the GFS rule names (tiers.HOT_REASONS).
NEWEST, VERIFIED = "newest", "verified"


@dataclass
class Selection:
    keep: dict[str, list[str]] = field(default_factory=dict)  # timestamp -> reasons
    policies: dict[str, str] = field(default_factory=dict)  # series -> the policy applied
    # Timestamp -> what keeps it, across every series, as data: the GFS rules (`monthly`,
    # never `oldest monthly`), NEWEST and VERIFIED. The storage class a kept backup
    # belongs in follows from it (workers/operations/tiers.py).
    keeping: dict[str, set[str]] = field(default_factory=dict)


def whose(series: str) -> str:
    if series == UNKNOWN:
        return "whose services are unknown"
    return f"of service {series}"


def select(candidates: Iterable[Candidate], policies: ServicePolicies) -> Selection:
    """What each series keeps, with the reasons: `<service>: <rules>`, or the newest and
    newest verified-good backup of a service."""
    by_series: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        for name in candidate.series():
            by_series.setdefault(name, []).append(candidate)
    selection = Selection(policies={name: policies.describe(name) for name in policies.services})
    for name, series in sorted(by_series.items()):
        selection.policies[name] = policies.describe(name)
        _select_series(selection, name, series, policies.of(name))
    return selection


def _select_series(
    selection: Selection, name: str, series: Sequence[Candidate], policy: gfs.Policy
) -> None:
    newest = max(c.timestamp for c in series)
    # The newest is listed by the rule that keeps it whatever the counts (every
    # policy that keeps anything keeps it too); the others by the GFS rules.
    selection.keep.setdefault(newest, []).append(f"newest backup {whose(name)}")
    selection.keeping.setdefault(newest, set()).add(NEWEST)
    kept = gfs.select([(c.timestamp, parse_timestamp(c.timestamp)) for c in series], policy)
    for stamp, rules in sorted(kept.items()):
        if stamp != newest:
            selection.keep.setdefault(stamp, []).append(f"{name}: {', '.join(rules)}")
        selection.keeping.setdefault(stamp, set()).update(
            rule.removeprefix("oldest ") for rule in rules
        )
    verified = [c.timestamp for c in series if c.verified_good]
    if verified:
        selection.keep.setdefault(max(verified), []).append(
            f"newest verified-good backup {whose(name)}"
        )
        selection.keeping.setdefault(max(verified), set()).add(VERIFIED)


def why_not_kept(candidate: Candidate, policies: ServicePolicies, *, by: str) -> str:
    """The deletion reason: `by` (whose retention) and every policy that was checked."""
    checked = "; ".join(f"{name} ({policies.describe(name)})" for name in candidate.series())
    return f"not kept by {by} of any service it holds: {checked}"

"""Grandfather-father-son retention with restic's semantics (`restic forget --keep-*`).

Backups are walked newest first. Each rule (hourly, daily, weekly, monthly,
yearly) has a count and remembers the period of the last backup it kept: a
backup whose period (its UTC hour, day, ISO week, month or year) differs from
that one is kept by the rule, which then counts one down. So each rule keeps
the newest backup of each of its last N periods that have a backup (periods
without one are skipped, not counted). As in restic 0.16+, a rule that still
has counts left when it reaches the oldest backup keeps it too, which
stretches the history as far as the counts allow. A count of -1 keeps every
period; 0 turns the rule off. A backup is kept if any rule keeps it.
"""

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from workers.settings import Settings

K = TypeVar("K", bound=Hashable)

# Rule name -> the period a moment falls in (all in UTC).
PERIODS: dict[str, Callable[[datetime], tuple[int, ...]]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}


@dataclass(frozen=True)
class Policy:
    hourly: int = 24
    daily: int = 30
    weekly: int = 12
    monthly: int = 84
    yearly: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> "Policy":
        return cls(
            hourly=settings.retention_keep_hourly,
            daily=settings.retention_keep_daily,
            weekly=settings.retention_keep_weekly,
            monthly=settings.retention_keep_monthly,
            yearly=settings.retention_keep_yearly,
        )

    def overridden(self, spec: Any) -> "Policy":
        """These counts, with those a services-file `[retention]` table sets instead."""
        if spec is None:
            return self
        changes = {
            name: value
            for name in PERIODS
            if (value := getattr(spec, f"keep_{name}", None)) is not None
        }
        return replace(self, **changes)

    @property
    def keeps_nothing(self) -> bool:
        """Every rule off: such a policy is refused rather than applied."""
        return all(getattr(self, name) == 0 for name in PERIODS)

    def describe(self) -> str:
        return ", ".join(f"keep-{name} {getattr(self, name)}" for name in PERIODS)


def select(backups: Sequence[tuple[K, datetime]], policy: Policy) -> dict[K, list[str]]:
    """Which backups the policy keeps, each with the rules that keep it."""
    ordered = sorted(backups, key=lambda item: item[1], reverse=True)
    counts = {name: getattr(policy, name) for name in PERIODS}
    last: dict[str, tuple[int, ...] | None] = dict.fromkeys(PERIODS)
    kept: dict[K, list[str]] = {}
    for position, (key, moment) in enumerate(ordered):
        oldest = position == len(ordered) - 1
        for name, period_of in PERIODS.items():
            if counts[name] == 0:
                continue
            period = period_of(moment)
            if period != last[name] or oldest:
                reason = name if period != last[name] else f"oldest {name}"
                kept.setdefault(key, []).append(reason)
                last[name] = period
                if counts[name] > 0:
                    counts[name] -= 1
    return kept

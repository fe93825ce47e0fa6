"""Storage tiers that follow retention: which storage class a kept backup belongs in.

STORAGE_CLASSES maps GFS rules to a store's storage classes, e.g.
`monthly=STANDARD_IA,yearly=DEEP_ARCHIVE` (S3) or `monthly=Cool,yearly=Archive`
(Azure). A kept backup belongs in the class of the *warmest* rule that keeps it:
while any daily or hourly rule (or the "newest backup" rule) keeps it, it stays
where it was written, so recent backups restore at once; once only the monthly
rule keeps it, it moves to the monthly class, and once only the yearly rule does,
to the yearly one. A backup only ever moves colder (a store's classes are listed
warm to cold): moving an archived object back costs a retrieval, and a policy
change alone is no reason to pay it.

Each class has a minimum storage duration the store bills whatever happens
(S3 Standard-IA 30 days, Glacier Deep Archive 180, Azure Cool 30, Archive 180):
retention does not delete a backup before its class's minimum has passed since
it moved there, unless forced (`backfleet retention --force`).

STORAGE_CLASSES is parsed (parse_storage_classes) when the settings are read and checked
against the configured store's classes (check_classes) when the fleet is built: both
live in workers/settings/, below the fleet, and are re-exported here.
"""

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta

from workers.operations.gfs import PERIODS
from workers.settings import check_classes, parse_storage_classes

__all__ = [
    "HOT_REASONS",
    "RULES",
    "check_classes",
    "deletable_from",
    "is_colder",
    "parse_storage_classes",
    "wanted_class",
]

# Rules in order, warmest (kept for the shortest time) first (settings.STORAGE_RULES too).
RULES = tuple(PERIODS)
# What keeps a backup whatever the counts: such a backup stays where it is (a base backup
# kept for a `pitr` service's window too: a restore to a moment starts from it).
HOT_REASONS = frozenset({"newest", "verified", "pitr window"})


def wanted_class(
    keeping: Collection[str], mapping: Mapping[str, str], available: Sequence[str]
) -> str | None:
    """The class a kept backup belongs in, given what keeps it (GFS rule names, or one of
    HOT_REASONS); None: where it was written (a rule without a class keeps it)."""
    rules = [rule for rule in RULES if rule in keeping]
    if not rules or HOT_REASONS & set(keeping):
        return None
    warmest = rules[0]
    storage_class = mapping.get(warmest)
    return storage_class if storage_class in available else None


def is_colder(candidate: str, current: str | None, available: Sequence[str]) -> bool:
    """Would moving to `candidate` make the object colder? (None: the default, warmest.)"""
    where = available.index(current) if current in available else 0
    return available.index(candidate) > where


def deletable_from(
    storage_class: str | None, since: datetime | None, minimum_days: Mapping[str, int]
) -> datetime | None:
    """When the class's billed minimum has passed; None if there is none to wait for."""
    days = minimum_days.get(storage_class or "", 0)
    if not days or since is None:
        return None
    return since + timedelta(days=days)

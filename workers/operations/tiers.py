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
"""

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta

from workers.operations.gfs import PERIODS

# Rules in order, warmest (kept for the shortest time) first.
RULES = tuple(PERIODS)
# What keeps a backup whatever the counts: such a backup stays where it is.
HOT_REASONS = frozenset({"newest", "verified"})


def parse_storage_classes(text: str) -> dict[str, str]:
    """`monthly=STANDARD_IA,yearly=DEEP_ARCHIVE` -> {rule: class}; ValueError names the fault."""
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        rule, _, storage_class = (piece.strip() for piece in item.partition("="))
        if rule not in RULES or not storage_class:
            raise ValueError(
                f"{item!r} is not `rule=CLASS` with a rule among {', '.join(RULES)}, e.g. "
                "monthly=STANDARD_IA,yearly=DEEP_ARCHIVE"
            )
        if rule in mapping:
            raise ValueError(f"rule {rule} is given twice")
        mapping[rule] = storage_class
    return mapping


def check_classes(mapping: Mapping[str, str], available: Sequence[str], store_kind: str) -> None:
    """Every class named must be one the store has, and colder rules must not name warmer
    classes (a yearly backup in a warmer class than a monthly one is a slip of the pen)."""
    if mapping and not available:
        raise ValueError(f"the {store_kind} store has a single storage class: leave it empty")
    for rule, storage_class in mapping.items():
        if storage_class not in available:
            raise ValueError(
                f"{rule}={storage_class}: the {store_kind} store's classes are "
                f"{', '.join(available)}"
            )
    ordered = [available.index(mapping[rule]) for rule in RULES if rule in mapping]
    if ordered != sorted(ordered):
        raise ValueError("a colder rule names a warmer class than a warmer rule does")


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

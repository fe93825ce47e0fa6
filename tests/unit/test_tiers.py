"""Storage tiers follow retention: the class a kept backup belongs in (operations/tiers.py)."""

from datetime import UTC, datetime

import pytest

from workers.operations.tiers import (
    check_classes,
    deletable_from,
    is_colder,
    parse_storage_classes,
    wanted_class,
)

S3 = ("STANDARD", "STANDARD_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")
MAPPING = {"monthly": "STANDARD_IA", "yearly": "DEEP_ARCHIVE"}


def test_parse() -> None:
    assert parse_storage_classes(" monthly=STANDARD_IA , yearly=DEEP_ARCHIVE ,") == MAPPING
    assert parse_storage_classes("") == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("quarterly=GLACIER", "rule among hourly, daily, weekly, monthly, yearly"),
        ("monthly", "is not `rule=CLASS`"),
        ("monthly=", "is not `rule=CLASS`"),
        ("monthly=A,monthly=B", "given twice"),
    ],
)
def test_parse_names_the_fault(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_storage_classes(text)


def test_classes_must_be_the_stores_and_in_order() -> None:
    check_classes(MAPPING, S3, "s3")
    with pytest.raises(ValueError, match="monthly=Cool: the s3 store's classes are STANDARD"):
        check_classes({"monthly": "Cool"}, S3, "s3")
    with pytest.raises(ValueError, match="colder rule names a warmer class"):
        check_classes({"monthly": "DEEP_ARCHIVE", "yearly": "STANDARD_IA"}, S3, "s3")
    with pytest.raises(ValueError, match="single storage class"):
        check_classes(MAPPING, (), "local")


@pytest.mark.parametrize(
    ("keeping", "wanted"),
    [
        ({"hourly", "daily", "monthly"}, None),  # a recent backup stays where it was written
        ({"weekly", "monthly"}, None),  # weekly has no class: it stays
        ({"monthly"}, "STANDARD_IA"),
        ({"monthly", "yearly"}, "STANDARD_IA"),  # the warmest rule decides
        ({"yearly"}, "DEEP_ARCHIVE"),
        ({"yearly", "newest"}, None),  # the newest backup of a service stays hot
        ({"yearly", "verified"}, None),  # so does the newest verified-good one
        (set(), None),  # kept only by a pin or a lock: left where it is
    ],
)
def test_the_warmest_keeping_rule_decides(keeping: set[str], wanted: str | None) -> None:
    assert wanted_class(keeping, MAPPING, S3) == wanted


def test_only_colder() -> None:
    assert is_colder("STANDARD_IA", None, S3)
    assert is_colder("DEEP_ARCHIVE", "STANDARD_IA", S3)
    assert not is_colder("STANDARD_IA", "DEEP_ARCHIVE", S3)
    assert not is_colder("STANDARD_IA", "STANDARD_IA", S3)


def test_minimum_storage_duration() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    minimum = {"STANDARD_IA": 30, "DEEP_ARCHIVE": 180}
    assert deletable_from("DEEP_ARCHIVE", since, minimum) == datetime(2026, 6, 30, tzinfo=UTC)
    assert deletable_from("STANDARD", since, minimum) is None
    assert deletable_from(None, since, minimum) is None
    assert deletable_from("STANDARD_IA", None, minimum) is None

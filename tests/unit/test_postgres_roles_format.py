"""The roles document a PostgreSQL backup keeps (workers/sources/postgres_roles.py)."""

import pytest

from workers.errors import IntegrityError
from workers.sources.postgres_roles import Membership, Role, Roles, _split_list


def test_the_document_round_trips_and_says_only_counts_in_the_facts() -> None:
    roles = Roles(
        passwords=True,
        roles=(Role(name="app", login=True, password="SCRAM-SHA-256$x", settings=("a=b",)),),
        memberships=(Membership(role="readers", member="app", admin=True),),
    )
    assert Roles.from_bytes(roles.to_bytes()) == roles
    assert roles.to_bytes() == Roles.from_bytes(roles.to_bytes()).to_bytes()  # deterministic
    assert roles.facts() == {"count": 1, "memberships": 1, "hashes": True}
    assert roles.secrets() == ["SCRAM-SHA-256$x"]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"not json", "corrupt"),
        (b'{"format": "other", "version": 1}', "corrupt"),
        (b'{"format": "backfleet-postgres-roles", "version": 2}', "newer Backfleet"),
        (b'{"format": "backfleet-postgres-roles", "version": 1, "roles": [{"x": 1}]}', "corrupt"),
    ],
)
def test_an_unreadable_document_is_an_integrity_error(data: bytes, problem: str) -> None:
    with pytest.raises(IntegrityError, match=problem):
        Roles.from_bytes(data)


@pytest.mark.parametrize(
    ("stored", "items"),
    [
        ('"$user", public', ["$user", "public"]),
        ("app", ["app"]),
        ('"we""ird", "a b" ,c', ['we"ird', "a b", "c"]),
        ('""', [""]),
    ],
)
def test_list_settings_split_as_pg_dump_splits_them(stored: str, items: list[str]) -> None:
    assert _split_list(stored) == items

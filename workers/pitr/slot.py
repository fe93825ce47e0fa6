"""Our physical replication slot on a `pitr` service's server: `backfleet_<ns>_<service>`.

It is what keeps the WAL on the server until it is shipped: created with
immediately_reserve (so it holds WAL from its creation on, before anyone streams),
advanced with pg_replication_slot_advance() only after a segment is uploaded and
recorded, dropped by `backfleet wal drop-slot`. pg_receivewal itself runs without a
slot. Creating, advancing and dropping need the REPLICATION attribute.
"""

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors

from workers.errors import ConfigError
from workers.pitr.lsn import format_lsn, parse_lsn

SLOT_PREFIX = "backfleet_"
MAX_NAME = 63  # NAMEDATALEN - 1
LOST = "lost"  # pg_replication_slots.wal_status of a slot whose WAL the server removed


@dataclass(frozen=True)
class SlotInfo:
    name: str
    restart_lsn: int | None  # None: it holds no WAL (lost)
    wal_status: str | None  # reserved, extended, unreserved, lost
    retained_bytes: int | None  # pg_current_wal_lsn() - restart_lsn


def slot_name(namespace: str, service: str) -> str:
    """`backfleet_<namespace>_<service>`, dashes as underscores; a name too long for
    PostgreSQL keeps its start and ends with a digest of the whole."""
    name = f"{SLOT_PREFIX}{namespace}_{service}".replace("-", "_")
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}_{digest}"


_INFO = """
SELECT slot_type, restart_lsn::text, wal_status,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
FROM pg_replication_slots WHERE slot_name = %s
"""


def slot_info(conn: psycopg.Connection[Any], name: str) -> SlotInfo | None:
    """The slot as the server has it; None if there is none."""
    row = conn.execute(_INFO, (name,)).fetchone()
    if row is None:
        return None
    kind, restart, status, retained = row
    if kind != "physical":
        raise ConfigError(
            f"replication slot {name} on the server is a {kind} slot, not Backfleet's physical "
            "one: drop or rename it"
        )
    return SlotInfo(
        name=name,
        restart_lsn=None if restart is None else parse_lsn(str(restart)),
        wal_status=None if status is None else str(status),
        retained_bytes=None if retained is None else int(retained),
    )


def create_slot(conn: psycopg.Connection[Any], name: str) -> SlotInfo:
    """Create the slot, holding WAL at once (immediately_reserve); an existing one is kept."""
    with contextlib.suppress(errors.DuplicateObject):  # made by another holder a moment ago
        conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (name,))
    info = slot_info(conn, name)
    assert info is not None
    return info


def advance_slot(conn: psycopg.Connection[Any], name: str, lsn: int) -> bool:
    """Let the server recycle the WAL before `lsn` (shipped and recorded); False when the
    slot is already there or past it, or the server clamps it (never backwards)."""
    info = slot_info(conn, name)
    if info is None or info.restart_lsn is None or info.restart_lsn >= lsn:
        return False
    try:
        conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (name, format_lsn(lsn)))
    except errors.ObjectNotInPrerequisiteState:  # another holder moved it past `lsn` meanwhile
        return False
    return True


def drop_slot(conn: psycopg.Connection[Any], name: str) -> bool:
    """Drop the slot (the server may then recycle its WAL); False if there was none."""
    try:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
    except errors.UndefinedObject:
        return False
    return True

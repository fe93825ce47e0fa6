"""`backfleet check` of a `pitr` service: what its server and role lack for streaming, each
said with what to change (docs/concepts/pitr.md has the exact CREATE ROLE and pg_hba.conf
lines).

It needs pg_receivewal on this machine, the REPLICATION attribute on the role (or a
superuser), wal_level `replica` (or `logical`), a free WAL sender and a free slot (or our
slot already there), and a pg_hba.conf line that lets the role in for replication.
"""

import shutil
from typing import Any

import psycopg

from workers.errors import ConfigError
from workers.pitr.receiver import PROGRAM
from workers.pitr.server import Server
from workers.pitr.slot import slot_info, slot_name
from workers.services_config import ServiceSpec

_FACTS = """
SELECT current_user,
       (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
       current_setting('wal_level'),
       current_setting('max_wal_senders')::int,
       (SELECT count(*) FROM pg_stat_replication),
       current_setting('max_replication_slots')::int,
       (SELECT count(*) FROM pg_replication_slots),
       current_setting('server_version')
"""


def check_replication(namespace: str, spec: ServiceSpec, secrets: list[str]) -> str:
    """A verdict, or ConfigError listing every missing piece."""
    if shutil.which(PROGRAM) is None:
        raise ConfigError(f"{PROGRAM} is not installed (install the PostgreSQL client tools)")
    server = Server(spec, secrets)
    slot = slot_name(namespace, spec.name)
    with server.connect() as conn:
        row = conn.execute(_FACTS).fetchone()
        assert row is not None
        user, replication, level, senders, busy, slots, used, version = row
        ours = slot_info(conn, slot)
    missing = []
    if not replication:
        missing.append(f"the REPLICATION attribute (ALTER ROLE {user} REPLICATION)")
    if level not in ("replica", "logical"):
        missing.append(f"wal_level = replica (it is {level}; a restart applies it)")
    if senders - busy < 1:
        missing.append(f"a free WAL sender (max_wal_senders = {senders}, {busy} in use)")
    if ours is None and slots - used < 1:
        missing.append(f"a free replication slot (max_replication_slots = {slots}, {used} used)")
    hba = _replication_refused(server)
    if hba is not None:
        missing.append(
            f"a pg_hba.conf line for replication connections of {user} from this machine ({hba})"
        )
    if missing:
        raise ConfigError("pitr needs " + "; ".join(missing))
    held = "not made yet" if ours is None else f"holds {(ours.retained_bytes or 0) >> 20} MiB"
    return (
        f"PostgreSQL {version}: ready to stream WAL (role {user} with REPLICATION, wal_level "
        f"{level}, {senders - busy} of {senders} WAL senders free; slot {slot} {held})"
    )


def _replication_refused(server: Server) -> str | None:
    """None if a replication connection gets in, else why not (redacted)."""
    try:
        conn: psycopg.Connection[Any] = psycopg.connect(
            server.conninfo(), password=server.password or None, replication="true"
        )
    except psycopg.Error as exc:
        return server.clean(exc).removeprefix("connection failed: ")
    conn.close()
    return None

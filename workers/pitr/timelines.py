"""Which timeline a WAL position belongs to on the server: after a promotion the server is on
a new timeline, and a stream that starts before the switch must start on the old one (the
server refuses a position past a timeline's end on it, and keeps no new-timeline copy of
the segments before the switch). pg_receivewal then follows the switch by itself.

The server's history comes from TIMELINE_HISTORY on a replication connection (what
pg_receivewal itself asks; no superuser needed).
"""

from typing import Any

import psycopg
from psycopg.pq import ExecStatus

from workers.errors import SourceError
from workers.pitr.lsn import parse_lsn
from workers.pitr.server import Server


def server_history(server: Server, timeline: int) -> list[tuple[int, int]]:
    """(timeline, the LSN where it ended) of every timeline before `timeline`, oldest first."""
    if timeline <= 1:
        return []
    try:
        conn: psycopg.Connection[Any] = psycopg.connect(
            server.conninfo(), password=server.password or None, replication="true"
        )
    except psycopg.Error as exc:
        raise SourceError(f"cannot read the timeline history: {server.clean(exc)}") from None
    with conn:
        result = conn.pgconn.exec_(f"TIMELINE_HISTORY {timeline}".encode())
        if result.status != ExecStatus.TUPLES_OK:
            said = server.clean((result.error_message or b"").decode(errors="replace"))
            raise SourceError(f"cannot read the history of timeline {timeline}: {said}")
        content = bytes(result.get_value(0, 1) or b"").decode(errors="replace")
    return parse_history(content)


def parse_history(content: str) -> list[tuple[int, int]]:
    """A `.history` file's lines, `<timeline>\\t<switch LSN>\\t<reason>` (comments aside)."""
    found = []
    for line in content.splitlines():
        fields = line.strip().split("\t")
        if len(fields) >= 2 and fields[0].isdigit():
            found.append((int(fields[0]), parse_lsn(fields[1].strip())))
    return sorted(found)


def timeline_of(lsn: int, current: int, history: list[tuple[int, int]]) -> int:
    """The timeline `lsn` is on: the first that ended after it, else the current one."""
    for timeline, end in history:
        if lsn < end:
            return timeline
    return current

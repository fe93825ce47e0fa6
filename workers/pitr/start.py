"""Where a stream starts: our slot on the server, what the catalog holds, the gaps between.

The stream starts at the segment holding the slot's restart_lsn, after the slot was moved
up to the end of the complete segments the catalog holds (a streamer killed between the
upload and the advance lost nothing, and does not ship it again). A slot that is missing
or invalidated is made anew, and what the store lacks from then on is a gap (gaps.py).
The stream starts on the timeline that segment is on (timelines.py).
"""

from dataclasses import dataclass
from typing import Any

import psycopg

from workers.catalog.db import session_scope
from workers.catalog.wal import newest_wal_file, shipped_end
from workers.fleet import Fleet
from workers.pitr.gaps import report_gap, unexplained_holes
from workers.pitr.lsn import format_lsn, segment_start
from workers.pitr.server import Server, ServerFacts
from workers.pitr.slot import LOST, advance_slot, create_slot, drop_slot, slot_info
from workers.pitr.timelines import server_history, timeline_of


@dataclass(frozen=True)
class StartPoint:
    timeline: int
    lsn: int  # a segment's start
    shipped: int | None  # the end of the valid data shipped already (this cluster's)


def start_point(
    fleet: Fleet,
    conn: psycopg.Connection[Any],
    *,
    namespace: str,
    service: str,
    server: Server,
    slot: str,
    facts: ServerFacts,
    removed: str | None = None,
) -> StartPoint:
    """Where to stream from. `removed`: the last receiver's complaint that the server had
    removed the WAL it asked for (the slot is made anew: a gap)."""
    with session_scope(fleet.settings.database_url) as session:
        newest = newest_wal_file(session, namespace=namespace, service=service)
        done = shipped_end(
            session,
            namespace=namespace,
            service=service,
            system_identifier=facts.system_identifier,
        )
    same = newest is not None and newest.system_identifier == facts.system_identifier
    have = newest.end_lsn if newest is not None and same else None
    reason = None
    if removed is not None:
        reason = f"the server had removed WAL the stream needed ({removed})"
        drop_slot(conn, slot)
    info = slot_info(conn, slot)
    if info is None:
        if newest is not None and reason is None:
            reason = f"replication slot {slot} was missing on the server (dropped?)"
        info = create_slot(conn, slot)
    elif info.wal_status == LOST or info.restart_lsn is None:
        reason = (
            f"the server invalidated replication slot {slot} (wal_status lost: it held more "
            "than max_slot_wal_keep_size) and removed WAL it held"
        )
        drop_slot(conn, slot)
        info = create_slot(conn, slot)
    if newest is not None and not same:
        reason = (
            f"the server is another cluster now (system identifier {facts.system_identifier}, "
            f"was {newest.system_identifier})"
        )
    if done is not None and same and info.restart_lsn is not None and info.restart_lsn < done:
        advance_slot(conn, slot, done)
        info = slot_info(conn, slot) or info
    assert info.restart_lsn is not None
    lsn = segment_start(info.restart_lsn, facts.segment_size)
    if have is not None and have < lsn and reason is None:
        reason = (
            f"WAL from {format_lsn(have)} to {format_lsn(lsn)} is not in the store and the "
            "server no longer keeps it"
        )
    if reason is not None:
        report_gap(
            fleet,
            namespace=namespace,
            service=service,
            system_identifier=facts.system_identifier,
            start_lsn=have,
            end_lsn=lsn if have is None else max(lsn, have),
            reason=reason,
        )
    if same:
        found = unexplained_holes(
            fleet, namespace=namespace, service=service, system_identifier=facts.system_identifier
        )
        for low, high in found:
            if low >= lsn:
                continue  # the server still keeps it: this stream ships it
            report_gap(
                fleet,
                namespace=namespace,
                service=service,
                system_identifier=facts.system_identifier,
                start_lsn=low,
                end_lsn=high,
                reason="segments are missing between those the catalog records",
            )
    history = server_history(server, facts.timeline)
    return StartPoint(timeline=timeline_of(lsn, facts.timeline, history), lsn=lsn, shipped=have)

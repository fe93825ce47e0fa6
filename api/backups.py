"""`GET /athena/api/v1/backups`: the catalog, filtered and a page at a time, newest first.

Without `namespace` it lists every configured namespace the key may act on, as
`GET /report/recovery` does: the namespace is a filter here, and a key scoped to some
namespaces sees only theirs. `since` and `until` are backup timestamps (both included).
The `cursor` is opaque to clients: the `next` of the previous page, with the same filters.
"""

import base64
import binascii
from typing import Annotated, Literal

from fastapi import Depends, Query
from fastapi.exceptions import RequestValidationError

from api.schemas import BackupList, BackupSummary, DnsLabel, Timestamp
from api.scopes import scoped_namespace
from workers.api_keys import ApiKey
from workers.catalog.db import session_scope
from workers.catalog.listing import BackupFilter, Position, backup_page
from workers.fleet import Fleet
from workers.timestamps import is_timestamp

DEFAULT_LIMIT, MAX_LIMIT = 50, 500
StatusName = Literal["Pending", "Running", "Success", "Failed"]
BAD_CURSOR = "is not a cursor this API gave: pass the `next` of the previous answer"


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", field), "msg": message, "input": None}]
    )


def encode_cursor(position: Position) -> str:
    raw = f"{position.timestamp}/{position.backup_id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> Position:
    """The position a cursor names; a 422 for anything this API did not give."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        raise _invalid("cursor", BAD_CURSOR) from None
    timestamp, _, backup_id = raw.partition("/")
    digits = backup_id.isascii() and backup_id.isdigit()  # "²" is a digit to isdigit
    if not is_timestamp(timestamp) or not digits or len(backup_id) > 18:
        raise _invalid("cursor", BAD_CURSOR)
    return Position(timestamp, int(backup_id))


class BackupQuery:
    """The query parameters of `GET /backups`, checked together."""

    def __init__(
        self,
        namespace: Annotated[
            DnsLabel | None,
            Query(description="Only this namespace; else every one the API key may act on"),
        ] = None,
        service: Annotated[
            DnsLabel | None, Query(description="Only backups holding (or to hold) this service")
        ] = None,
        status: Annotated[StatusName | None, Query(description="Only backups of this status")] = (
            None
        ),
        since: Annotated[
            Timestamp | None,
            Query(description="Only backups of this timestamp or later (UTC, included)"),
        ] = None,
        until: Annotated[
            Timestamp | None,
            Query(description="Only backups of this timestamp or earlier (UTC, included)"),
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="How many backups at most, newest first")
        ] = DEFAULT_LIMIT,
        cursor: Annotated[
            str | None,
            Query(
                max_length=200,
                description="Where to go on: the `next` of the previous answer (same filters)",
            ),
        ] = None,
    ) -> None:
        if since is not None and until is not None and until < since:
            raise _invalid("until", "is before `since`: nothing could match")
        self.namespace, self.service, self.status = namespace, service, status
        self.since, self.until, self.limit = since, until, limit
        self.after = None if cursor is None else decode_cursor(cursor)


BackupQueryDep = Annotated[BackupQuery, Depends()]


def readable_namespaces(fleet: Fleet, caller: ApiKey, requested: str | None) -> list[str]:
    """`requested` (403 outside the key's scope, 404 when not configured), else every
    configured namespace the key may act on."""
    if requested is not None:
        return [scoped_namespace(fleet, caller, requested)]
    return [ns for ns in sorted(fleet.config.namespaces) if caller.may_act_on(ns)]


def list_backups(fleet: Fleet, caller: ApiKey, asked: BackupQuery) -> BackupList:
    where = BackupFilter(
        namespaces=readable_namespaces(fleet, caller, asked.namespace),
        service=asked.service,
        status=asked.status,
        since=asked.since,
        until=asked.until,
    )
    with session_scope(fleet.settings.database_url) as session:
        page = backup_page(session, where=where, after=asked.after, limit=asked.limit)
        backups = [
            BackupSummary.of_listed(
                listed, url=fleet.store.url_for(listed.backup.namespace, listed.backup.timestamp)
            )
            for listed in page.backups
        ]
    return BackupList(backups=backups, next=encode_cursor(page.next) if page.next else None)

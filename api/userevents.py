"""`POST /athena/api/v1/userevents`: the platform's user actions, into the audit trail.

The body is a JSON array of events or JSON Lines (`application/x-ndjson`), in
the line format. Every line is validated before anything is stored; a bad one
fails the whole request (422) naming each bad line, and nothing of it is kept.
At most MAX_EVENTS events (and BODY_LIMIT bytes, enforced by api/limits.py).
"""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import FleetDep
from api.openapi import AUDIT_EVENTS, errors, needs
from api.schemas import NAMESPACE, DnsLabel
from api.scopes import Authorized, authorize, scoped_namespace
from workers.audit.catalog import NewEvent
from workers.audit.lines import split_body, validate_events
from workers.audit.user_events import store_events
from workers.errors import NotFoundError

MiB = 1024 * 1024
PATH = "/athena/api/v1/userevents"
BODY_LIMIT = 10 * MiB
MAX_EVENTS = 10_000
JSON_LINES_TYPES = ("application/x-ndjson", "application/jsonl", "application/jsonlines")

router = APIRouter(
    prefix="/athena/api/v1",
    tags=[AUDIT_EVENTS],
    dependencies=[Depends(authorize)],  # the key, and the `ingest` role
)


class Accepted(BaseModel):
    accepted: int = Field(description="How many events were stored")


@router.post(
    "/userevents",
    status_code=202,
    operation_id="UserEvents",
    summary="Send user events to the audit trail",
    description=f"""
Stores the platform's user actions in the namespace's audit trail; the audit flush ships
them to the object store as JSON Lines, grouped by each event's UTC date.

The body is a JSON array of events, or JSON Lines (`Content-Type: application/x-ndjson`),
in the line format: `opType`, `createdAt` (epoch ms), `nameHints`, `userEmail`,
`customerName`, `responseCode`, `requestParams`, `requestPayload`, `latencyInMillis`.
At most {MAX_EVENTS:,} events and {BODY_LIMIT // MiB} MiB. Every line is checked first:
one bad line fails the request, naming each bad line (1-based), and nothing is stored.

{needs("ingest")}
""",
    response_description="Stored: how many events",
    responses=errors(
        401,
        (403, "The API key lacks the `ingest` role, or may not act on the namespace"),
        (
            404,
            "User events are not enabled (`ENABLE_USER_EVENTS`), or the namespace is not "
            "configured",
        ),
        (413, f"More than {MAX_EVENTS:,} events or {BODY_LIMIT // MiB} MiB"),
        (
            422,
            "Some lines are not valid events (each is named by its 1-based line), or "
            "`namespace` is not a DNS label",
        ),
        503,
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": f"At most {MAX_EVENTS:,} events and {BODY_LIMIT // MiB} MiB",
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": {"type": "object"}, "maxItems": MAX_EVENTS}
                },
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "One event per line"}
                },
            },
        }
    },
)
async def ingest_user_events(
    request: Request,
    fleet: FleetDep,
    caller: Authorized,
    namespace: Annotated[DnsLabel | None, Query(description=NAMESPACE)] = None,
) -> Accepted:
    target = scoped_namespace(fleet, caller, namespace)
    if not fleet.settings.enable_user_events:
        raise NotFoundError("user events are not enabled on this fleet (ENABLE_USER_EVENTS)")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    items = split_body(
        await request.body(), json_lines=True if content_type in JSON_LINES_TYPES else None
    )
    if len(items) > MAX_EVENTS:
        raise HTTPException(413, f"{len(items)} events: at most {MAX_EVENTS} per request")
    events = [
        NewEvent.of_line(target, line, user_email=caller.owner_email, customer_name=caller.customer)
        for line in validate_events(items)
    ]
    if events:
        await run_in_threadpool(store_events, fleet.settings.database_url, events)
    return Accepted(accepted=len(events))

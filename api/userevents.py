"""`POST /athena/api/v1/userevents`: the platform's user actions, into the audit trail.

The body is a JSON array of events or JSON Lines (`application/x-ndjson`), in
the line format. Every line is validated before anything is stored; a bad one
fails the whole request (422) naming each bad line, and nothing of it is kept.
At most MAX_EVENTS events (and BODY_LIMIT bytes, enforced by api/limits.py).
"""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import FleetDep
from api.schemas import DnsLabel, Message
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
    tags=["audit"],
    dependencies=[Depends(authorize)],  # the key, and the `ingest` role
    responses={
        code: {"model": Message, "description": why}
        for code, why in (
            (401, "Missing or invalid API key"),
            (403, "Outside the API key's namespaces, or without the `ingest` role"),
            (404, "User events are not enabled, or the namespace is unknown"),
            (413, f"More than {MAX_EVENTS} events or {BODY_LIMIT // MiB} MiB"),
            (422, "Some lines are not valid events: each is named by its 1-based line"),
        )
    },
)


class Accepted(BaseModel):
    accepted: int


@router.post(
    "/userevents",
    status_code=202,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def ingest_user_events(
    request: Request,
    fleet: FleetDep,
    caller: Authorized,
    namespace: Annotated[
        DnsLabel | None, Query(description="defaults to the fleet's default namespace")
    ] = None,
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

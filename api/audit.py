"""Audit middleware: every /athena call becomes a user event, without slowing it.

For each call it notes the route's operation (`nameHints`), the caller's owner
(`userEmail`, `customerName`, set by the `authenticate` dependency), the answer's
status, the query and path parameters, the body with secrets masked, and the
latency; then it hands the event to the background recorder (api/recorder.py).
The request waits for none of it, and a failure to record is only logged.
"""

import contextlib
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.recorder import EventRecorder, recorder
from workers.audit.catalog import NewEvent
from workers.audit.lines import MAX_PAYLOAD_CHARS, cut_payload
from workers.fleet import Fleet
from workers.redact import MASK, redact
from workers.services_config import DNS_LABEL
from workers.settings import ApiKey
from workers.user_events import now_ms

log = logging.getLogger(__name__)

AUDITED_PREFIX = "/athena/"
CALLER_STATE = "audit_caller"
READS = frozenset({"GET", "HEAD", "OPTIONS"})
BASE = "/athena/api/v1"
OPERATIONS: Mapping[tuple[str, str], str] = {
    ("POST", f"{BASE}/ondemandbackup"): "OnDemandBackup",
    ("GET", f"{BASE}/backup/latest"): "LatestBackup",
    ("GET", f"{BASE}/backup/{{timestamp}}"): "BackupDetail",
    ("POST", f"{BASE}/ondemandrestore"): "OnDemandRestore",
    ("GET", f"{BASE}/restorestatus"): "RestoreStatus",
    ("POST", f"{BASE}/userevents"): "UserEvents",
}
# Bodies recorded only by their size: the events themselves are stored on their own.
PAYLOAD_NOT_RECORDED = frozenset({f"{BASE}/userevents"})
SECRET_FIELD = re.compile(r"(?i)pass|secret|token|key|credential|authorization|signature")


def operation_name(method: str, path_template: str) -> str:
    known = OPERATIONS.get((method, path_template))
    if known:
        return known
    words = re.split(r"[^a-zA-Z0-9]+", path_template.removeprefix(BASE))
    return "".join(word[:1].upper() + word[1:] for word in words if word) or "Unknown"


def _mask_fields(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            key: MASK if SECRET_FIELD.search(str(key)) else _mask_fields(value)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [_mask_fields(item) for item in data]
    return data


def redact_payload(body: bytes, secrets: list[str]) -> str:
    """The body as text with secret-looking JSON fields and known secrets masked."""
    text = body.decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError, RecursionError):  # not JSON: masked as text below
        text = json.dumps(_mask_fields(json.loads(text)), separators=(",", ":"))
    return cut_payload(redact(text, secrets))


def _params(scope: Scope, secrets: list[str]) -> dict[str, str]:
    raw = cast(bytes, scope.get("query_string", b"")).decode("latin-1")
    params = dict(parse_qsl(raw, keep_blank_values=True))
    params.update({str(k): str(v) for k, v in (scope.get("path_params") or {}).items()})
    return {
        key: MASK if SECRET_FIELD.search(key) else redact(value, secrets)[:1024]
        for key, value in params.items()
    }


def _namespace(fleet: Fleet, params: Mapping[str, str], body: bytes) -> str:
    wanted = params.get("namespace")
    if wanted is None and body[:1] == b"{":
        try:
            found = json.loads(body).get("namespace")
            wanted = found if isinstance(found, str) else None
        except ValueError:
            wanted = None
    if wanted and DNS_LABEL.match(wanted):
        return wanted
    return fleet.config.default_namespace


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, events: EventRecorder = recorder) -> None:
        self.app = app
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fleet = self._fleet(scope) if scope["type"] == "http" else None
        if fleet is None or not scope["path"].startswith(AUDITED_PREFIX):
            await self.app(scope, receive, send)
            return
        started, created = time.perf_counter(), now_ms()
        scope.setdefault("state", {})
        body = bytearray()
        status = 500  # what the client sees if the app dies without answering

        async def receive_noting_body() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) <= MAX_PAYLOAD_CHARS:
                body.extend(message.get("body", b""))
            return message

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive_noting_body, send_noting_status)
        finally:
            try:
                latency = int((time.perf_counter() - started) * 1000)
                self._record(fleet, scope, bytes(body), status, created, latency)
            except Exception as exc:  # recording must never fail the request
                log.warning("could not record an API event: %s", redact(str(exc)))

    def _fleet(self, scope: Scope) -> Fleet | None:
        try:
            fleet = cast(Fleet, scope["app"].state.fleet_provider())
        except Exception:
            return None  # the route answers 503 itself; nothing to record against
        return fleet if fleet.settings.enable_user_events else None

    def _record(
        self, fleet: Fleet, scope: Scope, body: bytes, status: int, created: int, latency: int
    ) -> None:
        secrets = fleet.secrets()
        method = str(scope["method"])
        route = scope.get("route")
        template = str(getattr(route, "path", scope["path"]))
        caller = scope.get("state", {}).get(CALLER_STATE)
        params = _params(scope, secrets)
        if template in PAYLOAD_NOT_RECORDED:
            payload = f"({len(body)} bytes of events, stored on their own)"
        else:
            payload = redact_payload(body, secrets)
        event = NewEvent(
            namespace=_namespace(fleet, params, body),
            op_type="Query" if method in READS else "Mutation",
            created_at=created,
            name_hints=(operation_name(method, template),),
            user_email=caller.owner_email if isinstance(caller, ApiKey) else "",
            customer_name=caller.customer if isinstance(caller, ApiKey) else "",
            response_code=status,
            request_params=params,
            request_payload=payload,
            latency_ms=latency,
        )
        self.events.submit(fleet.settings.database_url, event)

"""Audit middleware: every /athena call becomes a user event, without slowing it.

For each call it notes the route's operation (`nameHints`), the caller's owner
(`userEmail`, `customerName`, set by the `authenticate` dependency), the answer's
status, the query and path parameters, the body with secrets masked, and the
latency; then it hands the event to the background recorder (api/recorder.py).
The request waits for none of it, and a failure to record is only logged.

The event goes to each configured namespace the call acted on, as the route
told (workers.audit.scope: both of a restore from `sourceNamespace`), else to
the fleet's default namespace; never to a name only the query or body gave. A
call without a valid key is one event in the default namespace, its payload
reduced to its size and its parameters capped: it cannot fill the trail.
"""

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.recorder import EventRecorder, recorder
from api.session import LOGIN_PATH, LOGOUT_PATH, PAGE_PATH
from workers.audit.catalog import NewEvent
from workers.audit.lines import MAX_PAYLOAD_CHARS, cut_payload
from workers.audit.scope import noting
from workers.audit.user_events import now_ms
from workers.fleet import Fleet
from workers.redact import MASK, redact
from workers.settings import ApiKey

log = logging.getLogger(__name__)

AUDITED_PREFIX = "/athena/"
CALLER_STATE = "audit_caller"
READS = frozenset({"GET", "HEAD", "OPTIONS"})
BASE = "/athena/api/v1"
OPERATIONS: Mapping[tuple[str, str], str] = {
    ("POST", f"{BASE}/ondemandbackup"): "OnDemandBackup",
    ("GET", f"{BASE}/backup/latest"): "LatestBackup",
    ("GET", f"{BASE}/backup/{{timestamp}}"): "BackupDetail",
    ("GET", f"{BASE}/backups"): "ListBackups",
    ("POST", f"{BASE}/ondemandrestore"): "OnDemandRestore",
    ("GET", f"{BASE}/restorestatus"): "RestoreStatus",
    ("GET", f"{BASE}/report/recovery"): "RecoveryReport",
    ("POST", f"{BASE}/userevents"): "UserEvents",
    # The catalog page and its forms (api/ui/): HTML, outside the OpenAPI document.
    ("GET", PAGE_PATH): "CatalogPage",
    ("GET", LOGIN_PATH): "CatalogPageLoginForm",
    ("POST", LOGIN_PATH): "CatalogPageLogin",
    ("POST", LOGOUT_PATH): "CatalogPageLogout",
}
# Bodies recorded only by their size, and why: the events themselves are stored on their
# own; the login form holds an API key, which a keys file's holder alone knows.
PAYLOAD_NOT_RECORDED: Mapping[str, str] = {
    f"{BASE}/userevents": "events, stored on their own",
    LOGIN_PATH: "a login form, which holds a key",
}
SECRET_FIELD = re.compile(r"(?i)pass|secret|token|key|credential|authorization|signature")
# `"<secret-looking name>": <string or scalar>` in text that does not parse as JSON.
SECRET_JSON_VALUE = re.compile(
    r'("[^"\\]*(?i:pass|secret|token|key|credential|authorization|signature)[^"\\]*"\s*:\s*)'
    r'(?:"(?:[^"\\]|\\.)*"?|[^,{}\[\]\s]+)'
)


def operation_name(method: str, path_template: str) -> str:
    known = OPERATIONS.get((method, path_template))
    if known:
        return known
    words = re.split(r"[^a-zA-Z0-9]+", path_template.removeprefix(BASE))
    return "".join(word[:1].upper() + word[1:] for word in words if word) or "Unknown"


MAX_DEPTH = 32  # deeper JSON containers are recorded as a marker, not walked
TOO_DEEP = "[nested too deeply]"
MAX_PARAMS = 32  # query and path parameters kept per event
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 1024
# A caller without a valid key gets one bounded event: no payload, a few short parameters.
UNAUTHENTICATED_PARAMS, UNAUTHENTICATED_VALUE_CHARS = 8, 128


def _mask_fields(data: Any) -> Any:
    """`data` with secret-looking fields masked, walked without recursion.

    Containers deeper than MAX_DEPTH become TOO_DEEP, so no body shape can make
    the encoder (or this walk) run out of stack: the event is always recorded.
    """
    root: list[Any] = [data]
    stack: list[tuple[list[Any] | dict[Any, Any], int]] = [(root, 0)]
    while stack:
        container, depth = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in list(items):
            if isinstance(container, dict) and SECRET_FIELD.search(str(key)):
                container[key] = MASK
            elif isinstance(value, dict | list):
                if depth >= MAX_DEPTH:
                    container[key] = TOO_DEEP
                else:
                    stack.append((value, depth + 1))
    return root[0]


def redact_payload(body: bytes, secrets: list[str]) -> str:
    """The body as text with secret-looking JSON fields and known secrets masked."""
    text = body.decode("utf-8", errors="replace")
    try:
        text = json.dumps(_mask_fields(json.loads(text)), separators=(",", ":"))
    except RecursionError:  # nested deeper than the parser goes: nothing safe to keep
        return f"({len(body)} bytes not recorded: nested too deeply)"
    except ValueError:  # not JSON, or cut short: mask what looks like a secret field's value
        text = SECRET_JSON_VALUE.sub(lambda found: found[1] + json.dumps(MASK), text)
    return cut_payload(redact(text, secrets))


def _params(
    scope: Scope,
    secrets: list[str],
    *,
    max_params: int = MAX_PARAMS,
    max_chars: int = MAX_VALUE_CHARS,
) -> dict[str, str]:
    raw = cast(bytes, scope.get("query_string", b"")).decode("latin-1")
    pairs = parse_qsl(raw, keep_blank_values=True)[:max_params]
    pairs += [(str(k), str(v)) for k, v in (scope.get("path_params") or {}).items()]
    kept: dict[str, str] = {}
    for key, value in pairs[-max_params:]:  # path parameters last, so they are kept
        name = key[:MAX_KEY_CHARS]
        kept[name] = MASK if SECRET_FIELD.search(key) else redact(value, secrets)[:max_chars]
    return kept


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"content-length" and value.isdigit() and len(value) < 19:
            return int(value)
    return 0


def _namespaces(fleet: Fleet, acted_on: list[str], authenticated: bool) -> list[str]:
    """Where the event goes: the configured namespaces the call acted on, else the default."""
    if not authenticated:
        return [fleet.config.default_namespace]
    found = [name for name in acted_on if name in fleet.config.namespaces]
    return found or [fleet.config.default_namespace]


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
        body = bytearray()  # the first bytes only: a longer payload is cut anyway
        received = 0
        status = 500  # what the client sees if the app dies without answering

        async def receive_noting_body() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                body.extend(chunk[: MAX_PAYLOAD_CHARS + 1 - len(body)])
            return message

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with noting() as acted_on:
            try:
                await self.app(scope, receive_noting_body, send_noting_status)
            finally:
                try:
                    latency = int((time.perf_counter() - started) * 1000)
                    seen = Seen(bytes(body), max(received, _declared_length(scope)), acted_on)
                    self._record(fleet, scope, seen, status, created, latency)
                except Exception as exc:  # recording must never fail the request
                    log.warning("could not record an API event: %s", redact(str(exc)))

    def _fleet(self, scope: Scope) -> Fleet | None:
        try:
            fleet = cast(Fleet, scope["app"].state.fleet_provider())
        except Exception:
            return None  # the route answers 503 itself; nothing to record against
        return fleet if fleet.settings.enable_user_events else None

    def _record(
        self, fleet: Fleet, scope: Scope, seen: "Seen", status: int, created: int, latency: int
    ) -> None:
        secrets = fleet.secrets()
        method = str(scope["method"])
        route = scope.get("route")
        template = str(getattr(route, "path", scope["path"]))
        # A path no route matched (or a call refused before routing) is named only if known:
        # the name is never built from what a caller sent.
        known = route is not None or (method, template) in OPERATIONS
        caller = scope.get("state", {}).get(CALLER_STATE)
        authenticated = isinstance(caller, ApiKey)
        if not authenticated:  # a caller with no valid key writes one bounded event, no more
            params = _params(
                scope,
                secrets,
                max_params=UNAUTHENTICATED_PARAMS,
                max_chars=UNAUTHENTICATED_VALUE_CHARS,
            )
            payload = f"({seen.size} bytes not recorded: unauthenticated)"
        elif template in PAYLOAD_NOT_RECORDED:
            params = _params(scope, secrets)
            payload = f"({seen.size} bytes of {PAYLOAD_NOT_RECORDED[template]})"
        else:
            params = _params(scope, secrets)
            payload = redact_payload(seen.body, secrets)
        events = [
            NewEvent(
                namespace=namespace,
                op_type="Query" if method in READS else "Mutation",
                created_at=created,
                name_hints=(operation_name(method, template) if known else "Unknown",),
                user_email=caller.owner_email if isinstance(caller, ApiKey) else "",
                customer_name=caller.customer if isinstance(caller, ApiKey) else "",
                response_code=status,
                request_params=params,
                request_payload=payload,
                latency_ms=latency,
            )
            for namespace in _namespaces(fleet, seen.acted_on, authenticated)
        ]
        for event in events:
            self.events.submit(
                fleet.settings.database_url, event, unauthenticated=not authenticated
            )


@dataclass(frozen=True)
class Seen:
    """What the middleware saw of a request: its first bytes, its size, what it acted on."""

    body: bytes
    size: int
    acted_on: list[str]

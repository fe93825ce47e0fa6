"""Who is calling: the API key, checked from the headers alone, before any body byte is read.

`ApiKeyMiddleware` sits inside the audit middleware (so a refused call is still
recorded) and outside the body limit (which reads the body): a call to
/athena/... without a valid key is answered 401 at once, and its body, however
large it claims to be, is never read. A valid key is left on the request's
state for the `authenticate` dependency and the audit middleware. What the key
may do (its namespaces and roles) is checked later, by the routes (api/scopes.py),
since the namespace may be in the body.
"""

import json
import logging
from collections.abc import Sequence
from typing import cast

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from workers.api_keys import ApiKey, match_api_key
from workers.fleet import Fleet
from workers.redact import redact

log = logging.getLogger(__name__)

PROTECTED_PREFIX = "/athena/"
CALLER_STATE = "api_caller"  # the matched key, for api.deps.authenticate
AUDIT_CALLER_STATE = "audit_caller"  # the same key, for the audit middleware (api/audit.py)
NO_KEYS = (
    "no API key is configured: BACKFLEET_API_KEYS is empty and BACKFLEET_API_KEYS_FILE holds no key"
)
MISSING_KEY = (
    "missing API key: send `Authorization: <api-key>` or `Authorization: Bearer <api-key>`"
)
INVALID_KEY = "invalid API key"
UNAVAILABLE = "the service is not configured correctly; see its log"  # as api.deps.get_fleet
CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Unauthorized(Exception):
    """No valid API key; the message says why, never echoing what was sent."""


def identify(authorization: str | None, keys: Sequence[ApiKey]) -> ApiKey:
    """The key the Authorization header presents; Unauthorized if none matches."""
    if not keys:
        raise Unauthorized(NO_KEYS)
    if not authorization or not authorization.strip():
        raise Unauthorized(MISSING_KEY)
    caller = match_api_key(authorization, keys)
    if caller is None:
        raise Unauthorized(INVALID_KEY)
    return caller


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            fleet = cast(Fleet, scope["app"].state.fleet_provider())
        except Exception as exc:
            # No keys to check against: answered here, or the body limit would read the body.
            log.error("the API cannot build the fleet: %s", redact(str(exc)))
            await _refuse(send, UNAVAILABLE, body_may_follow=_has_body(headers), status=503)
            return
        try:
            caller = identify(headers.get("authorization"), fleet.settings.api_keys)
        except Unauthorized as exc:
            await _refuse(send, str(exc), body_may_follow=_has_body(headers))
            return
        state = scope.setdefault("state", {})
        state[CALLER_STATE] = caller
        state[AUDIT_CALLER_STATE] = caller
        await self.app(scope, receive, send)


def _has_body(headers: Headers) -> bool:
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


async def _refuse(send: Send, message: str, *, body_may_follow: bool, status: int = 401) -> None:
    body = json.dumps({"code": status, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers += [(name.lower().encode(), value.encode()) for name, value in CHALLENGE.items()]
    if body_may_follow:  # the unread body must not be taken for the next request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

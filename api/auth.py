"""Who is calling: the API key, checked from the headers alone, before any body byte is read.

`ApiKeyMiddleware` sits inside the audit middleware (so a refused call is still
recorded) and outside the body limit (which reads the body): a call to
/athena/... without a valid key is answered 401 at once, and its body, however
large it claims to be, is never read. A valid key is left on the request's
state for the `authenticate` dependency and the audit middleware. What the key
may do (its namespaces and roles) is checked later, by the routes (api/scopes.py),
since the namespace may be in the body.

The catalog page (api/ui/) is the one exception, for browsers, which cannot send the
header from a link: a GET of the page without an Authorization header may present the
session cookie its login form sets (api/session.py), and without a valid one is sent to
that form. The cookie is taken nowhere else (no JSON route, no POST: nothing it could
make a browser do on another site's behalf changes anything); the login and logout
forms are the only /athena paths reached without a key.
"""

import json
import logging
import time
from collections.abc import Sequence
from typing import cast

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from api.session import (
    COOKIE,
    LOGIN_PATH,
    OPEN_PATHS,
    holder,
    is_page,
    session_keys,
    session_secret,
)
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
        path = str(scope["path"]) if scope["type"] == "http" else ""
        if not path.startswith(PROTECTED_PREFIX) or path in OPEN_PATHS:
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
        if _may_use_session(scope, headers):
            caller = session_caller(fleet, headers)
            if caller is None:  # no session, or not a valid one any more: to the login form
                await _see_other(send, _root(scope) + LOGIN_PATH)
                return
        else:
            try:
                caller = identify(headers.get("authorization"), fleet.settings.api_keys)
            except Unauthorized as exc:
                await _refuse(send, str(exc), body_may_follow=_has_body(headers))
                return
        state = scope.setdefault("state", {})
        state[CALLER_STATE] = caller
        state[AUDIT_CALLER_STATE] = caller
        await self.app(scope, receive, send)


def _may_use_session(scope: Scope, headers: Headers) -> bool:
    """A read of the page without an Authorization header: the session cookie may stand in."""
    return (
        scope["method"] in ("GET", "HEAD")
        and is_page(str(scope["path"]))
        and "authorization" not in headers
        and not _has_body(headers)
    )


def session_caller(fleet: Fleet, headers: Headers) -> ApiKey | None:
    """The configured key the request's session cookie names, if it is valid and unexpired."""
    token = cookie_parser(headers.get("cookie", "")).get(COOKIE)
    secret = session_secret(fleet.settings) if token else None
    if not token or secret is None:
        return None
    return holder(token, secret, session_keys(fleet.settings), now=int(time.time()))


def _root(scope: Scope) -> str:
    """The path prefix a proxy serves the API under (`--root-path`), as api/docs.py uses."""
    return str(scope.get("root_path", "")).rstrip("/")


async def _see_other(send: Send, location: str) -> None:
    """A redirection for a browser (a GET without a body: nothing unread to worry about)."""
    headers = [
        (b"location", location.encode()),
        (b"content-length", b"0"),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


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

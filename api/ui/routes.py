"""`GET /athena/ui`: the catalog page; `/athena/ui/login` and `/logout`: its session.

The page is read-only and behind the same keys as the API: a call with the
`Authorization` header (curl, or a reverse proxy that adds it) is served as any /athena
call; a browser signs in once with the login form, which checks the key and sets an
HttpOnly, SameSite=Strict cookie holding a signed, expiring session (api/session.py),
never the key. The key needs the `read` role; the page shows only its namespaces.

The forms are POSTs that change nothing but the cookie, and are refused unless the
browser says they come from this very host (`Origin`): another site cannot log a browser
in with its own key, nor out. The pages carry a Content-Security-Policy that allows no
script and loads nothing (the style is inline), and are never cached.

Not in the OpenAPI document: HTML for people, not an API for programs
(`GET /athena/api/v1/backups` is the same catalog as JSON).
"""

import time
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth import INVALID_KEY, Unauthorized, identify
from api.backups import readable_namespaces
from api.deps import Caller, FleetDep
from api.schemas import DnsLabel
from api.scopes import missing_role
from api.session import (
    COOKIE,
    LOGIN_PATH,
    LOGOUT_PATH,
    PAGE_PATH,
    SESSION_SECONDS,
    issue,
    session_keys,
    session_secret,
)
from api.ui.render import catalog_page, error_page, login_page
from api.ui.view import catalog_view
from workers.api_keys import ApiKey
from workers.errors import ForbiddenError, NotFoundError

ui = APIRouter(include_in_schema=False)

HEADERS = {
    # No script may run and nothing may load, whatever a value managed to slip in.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not `no-referrer`: with it a browser sends `Origin: null`, and the forms' check fails.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
WRONG_ORIGIN = (
    "this form is taken only from this page: the browser did not say it was sent from "
    "this host (its Origin header)"
)
NO_SECRET = "signing in is not set up here: set BACKFLEET_UI_SECRET (docs/reference/settings.md)"
FILE_KEY = (
    "this key comes from BACKFLEET_API_KEYS_FILE: a session for it needs BACKFLEET_UI_SECRET "
    "(else send the key in the Authorization header)"
)
MAX_FORM_FIELDS = 4


def _root(request: Request) -> str:
    """The path prefix a proxy serves the API under (`--root-path`), as api/docs.py uses."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def _from_this_host(request: Request) -> bool:
    """The browser says the form was sent from a page of this host (scheme aside: a proxy
    may end TLS before the API)."""
    origin, host = request.headers.get("origin"), request.headers.get("host")
    if not origin or not host or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


def _reached_over_tls(request: Request) -> bool:
    """Did the browser use https, here or at a proxy that ended TLS before the API?

    The proxy's X-Forwarded-Proto / Forwarded header is believed even from an untrusted
    sender: it can only make the cookie Secure, which never weakens it (uvicorn itself
    rewrites the scheme only for FORWARDED_ALLOW_IPS, 127.0.0.1 by default)."""
    if request.url.scheme == "https":
        return True
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    standard = request.headers.get("forwarded", "").split(",")[0].lower().replace(" ", "")
    return forwarded == "https" or "proto=https" in standard.split(";")


def _session_cookie(request: Request, response: Response, value: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path=_root(request) + PAGE_PATH,
        httponly=True,  # no script reads it (and the page has none)
        secure=_reached_over_tls(request),  # plain http only on a trusted network
        samesite="strict",  # never sent with a request another site starts
    )


@ui.get(PAGE_PATH)
def catalog(
    request: Request,
    fleet: FleetDep,
    caller: Caller,
    namespace: Annotated[DnsLabel | None, Query()] = None,
    service: Annotated[DnsLabel | None, Query()] = None,
) -> HTMLResponse:
    root = _root(request)
    if not caller.holds("read"):
        return html(error_page(root=root, message=missing_role("read")), 403)
    try:
        namespaces = readable_namespaces(fleet, caller, namespace)
    except (ForbiddenError, NotFoundError) as exc:
        status = 403 if isinstance(exc, ForbiddenError) else 404
        return html(error_page(root=root, message=str(exc)), status)
    view = catalog_view(fleet, caller, namespaces, service=service)
    return html(catalog_page(view, root=root))


@ui.get(LOGIN_PATH)
def login_form(request: Request, fleet: FleetDep) -> HTMLResponse:
    can_log_in = session_secret(fleet.settings) is not None
    return html(login_page(root=_root(request), can_log_in=can_log_in))


def _presented_key(raw: bytes) -> str:
    try:
        fields = parse_qs(raw.decode(), max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return ""
    return (fields.get("key") or [""])[0]


@ui.post(LOGIN_PATH)
async def login(request: Request, fleet: FleetDep) -> Response:
    root = _root(request)
    if not _from_this_host(request):
        return html(login_page(root=root, message=WRONG_ORIGIN), 403)
    secret = session_secret(fleet.settings)
    if secret is None:
        return html(login_page(root=root, message=NO_SECRET, can_log_in=False), 503)
    presented = _presented_key(await request.body())
    try:
        caller: ApiKey = identify(presented, fleet.settings.api_keys)
    except Unauthorized:
        return html(login_page(root=root, message=INVALID_KEY), 401)
    request.state.audit_caller = caller  # the audit trail names who signed in
    if not caller.holds("read"):
        return html(login_page(root=root, message=missing_role("read")), 403)
    if all(key.digest != caller.digest for key in session_keys(fleet.settings)):
        return html(login_page(root=root, message=FILE_KEY), 403)
    response = RedirectResponse(root + PAGE_PATH, status_code=303, headers=HEADERS)
    _session_cookie(request, response, issue(secret, caller, now=int(time.time())), SESSION_SECONDS)
    return response


@ui.post(LOGOUT_PATH)
def logout(request: Request) -> Response:
    if not _from_this_host(request):
        return html(error_page(root=_root(request), message=WRONG_ORIGIN), 403)
    response = RedirectResponse(_root(request) + LOGIN_PATH, status_code=303, headers=HEADERS)
    _session_cookie(request, response, "", 0)
    return response

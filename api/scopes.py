"""What a key may do: the role each /athena route needs, and the namespaces a key may act on.

ROLE_OF is the one place a route's role is declared. `authorize` (a dependency of
every /athena router) refuses a key without that role before the body is
parsed, and refuses every key on a route missing from the table, so a route
that forgets its role fails closed (and tests/unit/test_api_scopes.py fails).

Refusals are 403 with one fixed message per kind: it never names another
namespace, nor says whether the requested one exists. A key's namespaces are
checked before the fleet's configuration is looked at for the same reason.
"""

import logging
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request

from api.deps import Caller, resolve_namespace
from workers.api_keys import ApiKey, Role
from workers.errors import ForbiddenError
from workers.fleet import Fleet

log = logging.getLogger(__name__)

BASE = "/athena/api/v1"
# `read` covers every route that only reads (status, list, latest, restorestatus, detail,
# the recovery report, the catalog's backups). The catalog page (api/ui/), HTML outside the
# OpenAPI document, checks `read` itself.
ROLE_OF: Mapping[tuple[str, str], Role] = {
    ("POST", f"{BASE}/ondemandbackup"): "backup",
    ("GET", f"{BASE}/backup/latest"): "read",
    ("GET", f"{BASE}/backup/{{timestamp}}"): "read",
    ("GET", f"{BASE}/backups"): "read",
    ("POST", f"{BASE}/ondemandrestore"): "restore",
    ("GET", f"{BASE}/restorestatus"): "read",
    ("GET", f"{BASE}/report/recovery"): "read",
    ("POST", f"{BASE}/userevents"): "ingest",
}
OUT_OF_SCOPE = "this API key may not act on the requested namespace"
NO_ROLE_DECLARED = "this call is refused to every key: its route declares no role"


def missing_role(role: Role) -> str:
    return f"this API key does not hold the `{role}` role this call needs"


def authorize(request: Request, caller: Caller) -> ApiKey:
    """The authenticated caller, if its key holds the role of the route being called."""
    route = request.scope.get("route")
    method = "GET" if request.method == "HEAD" else request.method
    role = ROLE_OF.get((method, str(getattr(route, "path", ""))))
    if role is None:
        log.error("route %s %s has no role in api.scopes.ROLE_OF", method, request.url.path)
        raise ForbiddenError(NO_ROLE_DECLARED)
    if not caller.holds(role):
        raise ForbiddenError(missing_role(role))
    return caller


Authorized = Annotated[ApiKey, Depends(authorize)]


def require_namespace(caller: ApiKey, namespace: str) -> str:
    """`namespace`, if the key may act on it; ForbiddenError otherwise."""
    if not caller.may_act_on(namespace):
        raise ForbiddenError(OUT_OF_SCOPE)
    return namespace


def scoped_namespace(fleet: Fleet, caller: ApiKey, requested: str | None) -> str:
    """The namespace asked for (or the default): first in the key's scope, then configured."""
    return resolve_namespace(
        fleet, require_namespace(caller, requested or fleet.config.default_namespace)
    )

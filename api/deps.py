"""The API's dependencies: the fleet, the authenticated caller, the enqueue function, bodies.

`create_app` stores the fleet provider and the enqueue function on `app.state`;
everything here reads them per request, so importing the API needs no
configured environment and tests inject their own.
"""

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ValidationError

from api.auth import CALLER_STATE, CHALLENGE, Unauthorized, identify
from api.schemas import DnsLabelText, RestoreStatusQuery, TimestampText
from workers.audit import scope as audit_scope
from workers.catalog.db import ping, session_scope
from workers.errors import BackfleetError, NotFoundError
from workers.fleet import Fleet
from workers.monitoring.redis_client import REQUEST, redis_client
from workers.operations.jobs import Enqueue
from workers.redact import redact
from workers.settings import ApiKey

log = logging.getLogger(__name__)

FleetProvider = Callable[[], Fleet]
M = TypeVar("M", bound=BaseModel)

# --- the fleet and the enqueue function ---


def get_fleet(request: Request) -> Fleet:
    """The process's fleet; 503 (details only in the log) when it cannot be built."""
    provider = cast(FleetProvider, request.app.state.fleet_provider)
    try:
        return provider()
    except BackfleetError as exc:
        log.error("the API cannot build the fleet: %s", redact(str(exc)))
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the service is not configured correctly; see its log",
        ) from None


def known_secrets(request: Request) -> list[str]:
    """Secret values to mask in messages; none when the fleet cannot be built."""
    try:
        return cast(FleetProvider, request.app.state.fleet_provider)().secrets()
    except Exception:
        return []


def get_enqueue(request: Request) -> Enqueue:
    return cast(Enqueue, request.app.state.enqueue)


FleetDep = Annotated[Fleet, Depends(get_fleet)]
EnqueueDep = Annotated[Enqueue, Depends(get_enqueue)]


def resolve_namespace(fleet: Fleet, requested: str | None) -> str:
    """The namespace asked for (or the default); NotFoundError when not configured."""
    namespace = requested or fleet.config.default_namespace
    if namespace not in fleet.config.namespaces:
        raise NotFoundError(f"namespace {namespace} is not configured in this fleet")
    audit_scope.acted_on(namespace)  # the audit trail records the call in this namespace
    return namespace


# --- authentication ---

api_key_header = APIKeyHeader(
    name="Authorization",
    auto_error=False,
    description="`<api-key>` or `Bearer <api-key>`: a key of BACKFLEET_API_KEYS or its file",
)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers=dict(CHALLENGE))


def authenticate(
    request: Request,
    fleet: FleetDep,
    authorization: Annotated[str | None, Depends(api_key_header)],
) -> ApiKey:
    """The caller's key: the one api.auth.ApiKeyMiddleware matched, else matched here."""
    caller = getattr(request.state, CALLER_STATE, None)
    if not isinstance(caller, ApiKey):  # an app assembled without the middleware
        try:
            caller = identify(authorization, fleet.settings.api_keys)
        except Unauthorized as exc:
            raise _unauthorized(str(exc)) from None
        request.state.audit_caller = caller  # the audit middleware's userEmail and customerName
    return caller


Caller = Annotated[ApiKey, Depends(authenticate)]


def requested_by(caller: ApiKey) -> str:
    return caller.owner_email or "api-key"


# --- JSON bodies, read by hand whatever the Content-Type (`curl -d` sends a form type) ---


def _invalid(loc: tuple[str | int, ...], kind: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": loc, "msg": message, "input": None}])


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; no bytes at all is `{}`."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise _invalid(("body",), "json_invalid", "request body is not UTF-8 text") from None
    except RecursionError:
        raise _invalid(("body",), "json_invalid", "request body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise _invalid(
            ("body",),
            "json_invalid",
            f"request body is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})",
        ) from None
    if not isinstance(data, dict):
        raise _invalid(("body",), "json_type", "request body must be a JSON object")
    return data


def validate_body(model: type[M], data: Mapping[str, Any], *, where: str = "body") -> M:
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        errors = [{**error, "loc": (where, *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None


def _field_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def refuse_disagreement(
    model: type[BaseModel], query: Iterable[tuple[str, str]], body: Mapping[str, Any]
) -> None:
    """422 for a query parameter naming a body field the body leaves out or gives otherwise.

    Otherwise `POST ondemandrestore?namespace=b` with `{"timestamp": …}` would
    act, silently, on the default namespace, and the audit record would show `b`.
    """
    fields = _field_names(model)
    for name, value in query:
        if name not in fields:
            continue
        if name not in body:
            raise _invalid(("query", name), "value_error", "belongs in the JSON body")
        if not isinstance(body[name], str) or body[name] != value:
            raise _invalid(("query", name), "value_error", "differs from the JSON body's")


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency parsing the request body as `model`; the query may only repeat its fields."""

    async def parse(request: Request) -> M:
        data = decode_json_object(await request.body())
        refuse_disagreement(model, request.query_params.multi_items(), data)
        return validate_body(model, data)

    return parse


async def restore_status_query(
    request: Request,
    timestamp: Annotated[
        TimestampText | None, Query(description="The backup; or `timestamp` in a JSON body")
    ] = None,
    namespace: Annotated[
        DnsLabelText | None, Query(description="Only restores into this namespace")
    ] = None,
) -> RestoreStatusQuery:
    """`GET /restorestatus` takes its fields from a JSON body (which wins) or the query."""
    body = decode_json_object(await request.body())
    query = {"timestamp": timestamp, "namespace": namespace}
    merged = {name: value for name, value in query.items() if value is not None} | body
    return validate_body(RestoreStatusQuery, merged, where="body" if body else "query")


RestoreStatusDep = Annotated[RestoreStatusQuery, Depends(restore_status_query)]


# --- readiness ---


def check_catalog(fleet: Fleet) -> None:
    with session_scope(fleet.settings.database_url) as session:
        ping(session)


def ping_broker(url: str) -> None:
    client = redis_client(url, REQUEST)
    try:
        client.ping()
    finally:
        client.close()


def check_broker(fleet: Fleet) -> None:
    ping_broker(fleet.settings.broker_url)


def check_store(fleet: Fleet) -> None:
    fleet.store.check()


READINESS_CHECKS: dict[str, Callable[[Fleet], None]] = {
    "catalog": check_catalog,
    "broker": check_broker,
    "store": check_store,
}


def readiness(request: Request) -> dict[str, str]:
    """Each check's outcome: "ok", or why it failed (redacted)."""
    provider = cast(FleetProvider, request.app.state.fleet_provider)
    try:
        fleet = provider()
    except Exception as exc:
        return {"config": f"failed: {redact(str(exc))}"}
    secrets = [*fleet.secrets(), fleet.settings.broker_url, fleet.settings.database_url]
    results: dict[str, str] = {}
    for name, check in READINESS_CHECKS.items():
        try:
            check(fleet)
        except Exception as exc:
            reason = redact(str(exc), secrets) or type(exc).__name__
            log.warning("readiness check %s failed: %s", name, reason)
            results[name] = f"failed: {reason}"
        else:
            results[name] = "ok"
    return results


ReadinessDep = Annotated[dict[str, str], Depends(readiness)]

"""Thin routes: parse, authenticate, call operations.jobs or the catalog queries, shape the answer.

Every /athena route is authenticated (api/auth.py, from the headers alone) and
its role checked (api/scopes.py) before its body or parameters are looked at;
the namespaces it names are checked against the key's scope before anything
else, and nothing is enqueued unless every check of workers.operations.jobs has passed.
Handlers are plain `def`s: FastAPI runs them in its thread pool, so the
blocking catalog and store calls never stall the event loop.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from api.deps import (
    EnqueueDep,
    FleetDep,
    ReadinessDep,
    RestoreStatusDep,
    json_body,
    requested_by,
)
from api.recovery import ServiceRecoveryReport, recovery_for
from api.schemas import (
    BackupDetail,
    BackupRequest,
    BackupStatus,
    DnsLabel,
    Health,
    Message,
    Readiness,
    RestoreRequest,
    RestoreStatusQuery,
    Status,
    Timestamp,
    openapi_body,
)
from api.scopes import Authorized, authorize, require_namespace, scoped_namespace
from workers.audit import scope as audit_scope
from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.errors import NotFoundError
from workers.operations import jobs

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Message, "description": description}
    for code, description in (
        (401, "Missing or invalid API key"),
        (403, "Outside the API key's namespaces or roles"),
        (404, "Not found"),
        (413, "Body too large"),
        (422, "Invalid request"),
    )
}

health = APIRouter(tags=["health"])
athena = APIRouter(
    prefix="/athena/api/v1",
    tags=["athena"],
    dependencies=[Depends(authorize)],  # the key, and the role api.scopes.ROLE_OF names
    responses=ERRORS,
)

NamespaceQuery = Annotated[
    DnsLabel | None, Query(description="defaults to the fleet's default namespace")
]


@health.get("/healthz")
def healthz() -> Health:
    return Health(status="ok")


@health.get("/readyz", response_model=Readiness, responses={503: {"description": "A check failed"}})
def readyz(checks: ReadinessDep) -> JSONResponse:
    failed = sorted(name for name, outcome in checks.items() if outcome != "ok")
    if not failed:
        return JSONResponse({"status": "ready", "checks": checks})
    message = "not ready: " + ", ".join(f"{name} {checks[name]}" for name in failed)
    return JSONResponse(
        {"code": 503, "message": message, "status": "not ready", "checks": checks},
        status_code=503,
    )


@athena.post(
    "/ondemandbackup",
    status_code=202,
    responses={409: {"model": Message, "description": "A backup is already in progress"}},
    openapi_extra=openapi_body(BackupRequest, required=False),
)
def ondemand_backup(
    fleet: FleetDep,
    caller: Authorized,
    enqueue: EnqueueDep,
    body: Annotated[BackupRequest, Depends(json_body(BackupRequest))],
) -> Message:
    backup = jobs.request_backup(
        fleet,
        namespace=scoped_namespace(fleet, caller, body.namespace),
        only_config=body.only_config,
        trigger="api",
        requested_by=requested_by(caller),
        customer=caller.customer,  # the customerName of the Backup/Restore audit event
        enqueue=enqueue,
    )
    return Message(code=202, message=f"Request Accepted with timestamp {backup.timestamp}")


@athena.get("/backup/latest")
def latest_backup(
    fleet: FleetDep, caller: Authorized, namespace: NamespaceQuery = None
) -> BackupStatus:
    ns = scoped_namespace(fleet, caller, namespace)
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.latest_backup(session, namespace=ns)
        if backup is None:
            raise NotFoundError(f"no backup of namespace {ns} yet")
        return BackupStatus.of_backup(backup, url=fleet.store.url_for(ns, backup.timestamp))


@athena.get("/backup/{timestamp}")
def backup_detail(
    fleet: FleetDep, caller: Authorized, timestamp: Timestamp, namespace: NamespaceQuery = None
) -> BackupDetail:
    ns = scoped_namespace(fleet, caller, namespace)
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace=ns, timestamp=timestamp)
        if backup is None:
            raise NotFoundError(f"no backup {timestamp} of namespace {ns} in the catalog")
        return BackupDetail.of(backup, url=fleet.store.url_for(ns, timestamp))


@athena.post(
    "/ondemandrestore",
    status_code=202,
    responses={409: {"model": Message, "description": "A restore is already in progress"}},
    openapi_extra=openapi_body(RestoreRequest, required=True),
)
def ondemand_restore(
    fleet: FleetDep,
    caller: Authorized,
    enqueue: EnqueueDep,
    body: Annotated[RestoreRequest, Depends(json_body(RestoreRequest))],
) -> Message:
    target = scoped_namespace(fleet, caller, body.namespace)
    # Reading another namespace's backup needs the key to hold that namespace too.
    source = require_namespace(caller, body.source_namespace or target)
    jobs.request_restore(
        fleet,
        namespace=target,
        timestamp=body.timestamp,
        source_namespace=source,
        skip=body.skipped,
        requested_by=requested_by(caller),
        customer=caller.customer,  # the customerName of the Backup/Restore audit event
        enqueue=enqueue,
        allow_unsigned=body.allow_unsigned,
    )
    return Message(code=202, message="Request Accepted")


@athena.get("/restorestatus", openapi_extra=openapi_body(RestoreStatusQuery, required=False))
def restore_status(fleet: FleetDep, caller: Authorized, asked: RestoreStatusDep) -> Status:
    if asked.namespace is not None:
        require_namespace(caller, asked.namespace)
        audit_scope.acted_on(asked.namespace)  # only once the key may: a refusal stays out
    with session_scope(fleet.settings.database_url) as session:
        # A scoped key sees only restores whose target and source it both holds.
        restore = queries.latest_restore(
            session, timestamp=asked.timestamp, namespace=asked.namespace, within=caller.namespaces
        )
        if restore is None:
            into = f" into namespace {asked.namespace}" if asked.namespace else ""
            raise NotFoundError(f"no restore of backup {asked.timestamp}{into}")
        return Status.of_restore(restore)


@athena.get("/report/recovery")
def recovery_report(
    fleet: FleetDep, caller: Authorized, namespace: NamespaceQuery = None
) -> list[ServiceRecoveryReport]:
    """Each service's RTO, last drill (when, which backup, how long, counts), whether it met
    the RTO, failing or overdue drills, and its last user restore (`backfleet report`)."""
    ns = scoped_namespace(fleet, caller, namespace) if namespace is not None else None
    return recovery_for(fleet, caller, ns)

"""Thin routes: parse, authenticate, call operations.jobs or the catalog queries, shape the answer.

Every /athena route is authenticated (api/auth.py, from the headers alone) and
its role checked (api/scopes.py) before its body or parameters are looked at;
the namespaces it names are checked against the key's scope before anything
else, and nothing is enqueued unless every check of workers.operations.jobs has passed.
Handlers are plain `def`s: FastAPI runs them in its thread pool, so the
blocking catalog and store calls never stall the event loop. The probes' routes are in
api/health.py.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.backups import MAX_LIMIT, BackupQueryDep, list_backups
from api.deps import (
    EnqueueDep,
    FleetDep,
    RestoreStatusDep,
    json_body,
    requested_by,
)
from api.limits import DEFAULT_BODY_LIMIT, human_size
from api.openapi import (
    BACKUPS,
    OUTSIDE_WINDOW,
    PITR_LATEST,
    QUEUE_UNAVAILABLE,
    RESTORES,
    TO_A_MOMENT,
    WHY,
    errors,
    needs,
)
from api.pitr import pitr_windows
from api.recovery import ServiceRecoveryReport, recovery_for
from api.schemas import (
    NAMESPACE,
    BackupDetail,
    BackupList,
    BackupRequest,
    BackupStatus,
    DnsLabel,
    LatestBackupStatus,
    Message,
    RestoreAccepted,
    RestoreRequest,
    RestoreStatus,
    RestoreStatusQuery,
    Timestamp,
    openapi_body,
)
from api.scopes import Authorized, authorize, require_namespace, scoped_namespace
from workers.audit import scope as audit_scope
from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.errors import NotFoundError
from workers.operations import jobs

athena = APIRouter(
    prefix="/athena/api/v1",
    dependencies=[Depends(authorize)],  # the key, and the role api.scopes.ROLE_OF names
    responses=errors(401, 403, 503),  # each route adds the errors of its own
)

NamespaceQuery = Annotated[DnsLabel | None, Query(description=NAMESPACE)]
BODY_LIMIT = human_size(DEFAULT_BODY_LIMIT)


@athena.post(
    "/ondemandbackup",
    status_code=202,
    tags=[BACKUPS],
    operation_id="OnDemandBackup",
    summary="Request an on-demand backup",
    description=f"""
Queues a backup of every service of the namespace now or, with `{{"onlyConfig": true}}`,
of its configuration services only (`config = true` in the services file). The answer
names the new backup's timestamp: follow it with `GET /athena/api/v1/backup/{{timestamp}}`.

The body is `{{}}` (or empty), at most {BODY_LIMIT}. Refused with 409 while a backup of
the namespace is `Pending` or `Running`, or a restore into it is.

{needs("backup")}
""",
    response_description="Queued: the message names the new backup's timestamp",
    responses=errors(
        (404, "The namespace is not configured in this fleet"),
        (
            409,
            "A backup of the namespace is Pending or Running, or a restore into it is: "
            "the message names its timestamp",
        ),
        413,
        (
            422,
            "The body is not valid (an unknown field, `onlyConfig` not a boolean), or "
            "`onlyConfig` is asked of a namespace without configuration services",
        ),
        QUEUE_UNAVAILABLE,
    ),
    openapi_extra=openapi_body(
        BackupRequest, required=False, description=f"`{{}}` or nothing, at most {BODY_LIMIT}"
    ),
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


@athena.get(
    "/backup/latest",
    tags=[BACKUPS],
    operation_id="LatestBackup",
    summary="Get the newest backup of a namespace",
    description=f"""
The newest backup of the namespace, whatever its status (a `Running` one too): where it
lives, its status, its last verification, and whether its sizes were unusual. {PITR_LATEST}

{needs("read")}
""",
    response_description="The newest backup",
    responses=errors(
        (404, "No backup of the namespace yet, or the namespace is not configured"),
        (422, "`namespace` is not a DNS label"),
    ),
)
def latest_backup(
    fleet: FleetDep, caller: Authorized, namespace: NamespaceQuery = None
) -> LatestBackupStatus:
    ns = scoped_namespace(fleet, caller, namespace)
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.latest_backup(session, namespace=ns)
        if backup is None:
            raise NotFoundError(f"no backup of namespace {ns} yet")
        status = BackupStatus.of_backup(backup, url=fleet.store.url_for(ns, backup.timestamp))
    return LatestBackupStatus(**status.model_dump(), pitr=pitr_windows(fleet, ns))


@athena.get(
    "/backup/{timestamp}",
    tags=[BACKUPS],
    operation_id="BackupDetail",
    summary="Get one backup in detail",
    description=f"""
One backup of the namespace, from the catalog: its status and times, its services, each
artifact (its object key, size, SHA-256, encryption, and bytes read so far while the
backup runs), its hooks' runs, and its error or warning.

{needs("read")}
""",
    response_description="The backup",
    responses=errors(
        (404, "No such backup of the namespace in the catalog, or the namespace is not configured"),
        (422, "`timestamp` is not a backup timestamp, or `namespace` not a DNS label"),
    ),
)
def backup_detail(
    fleet: FleetDep,
    caller: Authorized,
    timestamp: Annotated[Timestamp, Path(description="The backup's timestamp (UTC)")],
    namespace: NamespaceQuery = None,
) -> BackupDetail:
    ns = scoped_namespace(fleet, caller, namespace)
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace=ns, timestamp=timestamp)
        if backup is None:
            raise NotFoundError(f"no backup {timestamp} of namespace {ns} in the catalog")
        return BackupDetail.of(backup, url=fleet.store.url_for(ns, timestamp))


@athena.get(
    "/backups",
    tags=[BACKUPS],
    operation_id="ListBackups",
    summary="List the backups in the catalog",
    description=f"""
The backups of the catalog, newest first, a page at a time: of the namespace, or of every
configured namespace the API key may act on when none is named. Filters: `service` (the
backups holding it, or to hold it), `status`, and `since` / `until` (backup timestamps,
both included). Each backup comes with its status, services, times and duration, stored
and source bytes, last verification, size anomaly, error and warning (the names of
`GET /athena/api/v1/backup/{{timestamp}}`).

`limit` backups at most (default 50, at most {MAX_LIMIT}); when more match, `next` is the
`cursor` of the next page: ask again with the same filters and `cursor=<next>`. A backup
taken meanwhile does not shift the pages.

{needs("read")} Without `namespace`, only the key's namespaces are listed.
""",
    response_description="A page of backups, and the cursor of the next page",
    responses=errors(
        (404, "The namespace is not configured"),
        (
            422,
            "A parameter is not valid: `namespace` or `service` not a DNS label, `status` "
            "not a status, `since` or `until` not a backup timestamp or `until` before "
            f"`since`, `limit` not 1 to {MAX_LIMIT}, or `cursor` not a `next` of this API",
        ),
    ),
)
def backups(fleet: FleetDep, caller: Authorized, asked: BackupQueryDep) -> BackupList:
    return list_backups(fleet, caller, asked)


@athena.post(
    "/ondemandrestore",
    status_code=202,
    tags=[RESTORES],
    operation_id="OnDemandRestore",
    summary="Request a restore of a backup",
    description=f"""
Queues a restore of backup `timestamp` into the namespace: every service the backup
holds, except those `svcs` disables. Each restored service's data is replaced by the
backup's; a restore that fails leaves the previous data in place. Follow it with
`GET /athena/api/v1/restorestatus` and the `timestamp` of the answer.

{TO_A_MOMENT}

The backup may live in another namespace (`sourceNamespace`), and be one this catalog never
recorded: its manifest in the store is enough. A source namespace this fleet does not
configure is refused unless `BACKFLEET_ALLOW_UNCONFIGURED_SOURCE_NAMESPACES=true`.
Everything is checked before anything is queued: the backup exists, is a successful one,
is authentic (unless `allowUnsigned`), and each service restored is configured in the
namespace, of the same kind. The body is at most {BODY_LIMIT}.

{needs("restore")} With `sourceNamespace`, the key must hold both namespaces.
""",
    response_description="Queued: `timestamp` names the backup restored",
    responses=errors(
        (
            400,
            "The backup cannot be authenticated (see `allowUnsigned`), or its manifest is damaged",
        ),
        (
            403,
            WHY[403] + " (both, with `sourceNamespace`), or the source namespace is not "
            "configured in this fleet",
        ),
        (
            404,
            "The namespace is not configured, or the backup is neither in the catalog nor "
            "in the store",
        ),
        (
            409,
            "The backup is not a successful one, or a backup or restore of the namespace "
            "is Pending or Running: the message names its timestamp",
        ),
        413,
        (
            422,
            "The body is not valid, or `svcs` names a service the backup does not hold, "
            f"or a service is not configured in the namespace, or {OUTSIDE_WINDOW}: the "
            "message says which",
        ),
        (503, QUEUE_UNAVAILABLE[1] + ", or the store did not answer"),
    ),
    openapi_extra=openapi_body(RestoreRequest, required=True, description=f"At most {BODY_LIMIT}"),
)
def ondemand_restore(
    fleet: FleetDep,
    caller: Authorized,
    enqueue: EnqueueDep,
    body: Annotated[RestoreRequest, Depends(json_body(RestoreRequest))],
) -> RestoreAccepted:
    target = scoped_namespace(fleet, caller, body.namespace)
    # Reading another namespace's backup needs the key to hold that namespace too.
    source = require_namespace(caller, body.source_namespace or target)
    restore = jobs.request_restore(
        fleet,
        namespace=target,
        timestamp=body.timestamp,
        source_namespace=source,
        skip=body.skipped,
        requested_by=requested_by(caller),
        customer=caller.customer,  # the customerName of the Backup/Restore audit event
        enqueue=enqueue,
        allow_unsigned=body.allow_unsigned,
        target_time=body.target_time,
    )
    return RestoreAccepted(code=202, message="Request Accepted", timestamp=restore.timestamp)


@athena.get(
    "/restorestatus",
    tags=[RESTORES],
    operation_id="RestoreStatus",
    summary="Get the status of a restore",
    description=f"""
The newest restore of backup `timestamp` (into `namespace`, when given). The answer's
`namespace` and `backupurl` name where the backup lives, not the namespace restored into;
`targetTime` is the moment a restore to a moment restores to (null: the backup as it was),
and `timestamp` then the backup whose base backups the WAL was replayed onto.

The fields come from the query string or from a JSON body (which wins), at most
{BODY_LIMIT}.

{needs("read")} A key limited to some namespaces sees only the restores whose target and
source namespaces it both holds.
""",
    response_description="The newest restore of that backup",
    responses=errors(
        (404, "No restore of that backup (into that namespace)"),
        (413, f"The JSON body is larger than {BODY_LIMIT}"),
        (
            422,
            "No `timestamp`, or it is not a backup timestamp; `namespace` not a DNS "
            "label; or the body is not a JSON object of these fields",
        ),
    ),
    openapi_extra=openapi_body(
        RestoreStatusQuery,
        required=False,
        description=f"Instead of the query string, at most {BODY_LIMIT}",
    ),
)
def restore_status(fleet: FleetDep, caller: Authorized, asked: RestoreStatusDep) -> RestoreStatus:
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
        return RestoreStatus.of_restore(restore)


@athena.get(
    "/report/recovery",
    tags=[BACKUPS],
    operation_id="RecoveryReport",
    summary="Get each service's recovery-time evidence",
    description=f"""
For every service of the namespace (or of every namespace the key may act on, when none
is named): its recovery-time objective, its last drill into scratch (when, which backup,
how long, whether its counts matched), whether that met the objective, drills failing or
overdue, and the last restore a user ran. The same table as `backfleet report`.

{needs("read")}
""",
    response_description="One entry per service",
    responses=errors(
        (404, "The namespace is not configured"),
        (422, "`namespace` is not a DNS label"),
    ),
)
def recovery_report(
    fleet: FleetDep, caller: Authorized, namespace: NamespaceQuery = None
) -> list[ServiceRecoveryReport]:
    ns = scoped_namespace(fleet, caller, namespace) if namespace is not None else None
    return recovery_for(fleet, caller, ns)

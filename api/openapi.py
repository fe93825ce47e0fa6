"""The words of the OpenAPI document: the tags, the API's description, the error answers.

Each route lists only the errors it can give (`errors(...)`), each with why; the
bodies are all `Message` (`{"code": N, "message": "..."}`, api/errors.py). Tags
are named for what a user does, in the order /docs and /redoc show them.
"""

from typing import Any

from api.limits import DEFAULT_BODY_LIMIT, human_size
from api.schemas import Message
from workers.api_keys import Role

BACKUPS, RESTORES, AUDIT_EVENTS, HEALTH = "Backups", "Restores", "Audit events", "Health"

TAGS: list[dict[str, Any]] = [
    {
        "name": BACKUPS,
        "description": "Back a namespace up now, and see how its newest backup, or any one, went.",
    },
    {
        "name": RESTORES,
        "description": "Restore a backup into a namespace, and follow the restore.",
    },
    {
        "name": AUDIT_EVENTS,
        "description": "Send the platform's user actions into the audit trail, which ships them "
        "to the object store as JSON Lines.",
    },
    {
        "name": HEALTH,
        "description": "Liveness, readiness and Prometheus metrics, for probes and scrapers: "
        "no API key needed.",
    },
]

# Restores to a moment (issue 21): the words `ondemandrestore` and `backup/latest` add.
TO_A_MOMENT = """**To a moment**: with `targetTime` (RFC 3339, UTC), the `pitr` services are
restored as they were at that moment: the fleet picks the newest backup whose base backups
end before it, with the streamed WAL continuous from them (`timestamp` may be omitted; if
given, it must be such a backup), and replays the WAL onto them up to the moment. The
backup's other services are restored as they were at backup time. The answer names the
backup picked. A moment outside a service's recoverable window (`GET
/athena/api/v1/backup/latest` shows it) is a 422 naming the window."""
PITR_LATEST = """For each `pitr` service of the namespace (`pitr`): its recoverable window
(the earliest and latest moments a restore with `targetTime` can reach), how far back it
is promised, and how far its streamed WAL lags behind the server."""
OUTSIDE_WINDOW = (
    "`targetTime` is outside a service's recoverable window (the message names the window, "
    "earliest and latest) or no backup can reach it"
)

DESCRIPTION = f"""
Backfleet backs up the services of each namespace (PostgreSQL, SQLite, directories,
commands) to an object store, and restores them. This API asks for a backup or a
restore now and tells how they went; the workers do the work.

**API key.** Every `/athena/...` call carries `Authorization: <api-key>` (or
`Bearer <api-key>`); on `/docs`, *Authorize* sends one with every call tried there. A
key may be limited to some namespaces and roles (`read`, `backup`, `restore`, `ingest`):
each call says the role it needs. A call outside the key's scope is a 403.

**Namespaces.** Every call acts on the fleet's default namespace unless it names
another (`namespace`: a body field on POST, a query parameter on GET). Namespace and
service names are DNS labels: lower-case letters, digits and `-`, 1-63 characters.

**Timestamps** name backups: UTC, `YYYY-MM-DDtHH-MM-SS` with a lower-case `t`, such as
`2023-02-02t17-03-15`. **Statuses** are `Pending`, `Running`, `Success`, `Failed`.

**Errors** are JSON `{{"code": N, "message": "..."}}`: the message says what to fix and
never echoes a secret. Nothing is queued for a refused request. Bodies are at most
{human_size(DEFAULT_BODY_LIMIT)} (`POST /athena/api/v1/userevents`: its own limit).
"""

# Why each error, where every route that gives it gives it for the same reasons.
WHY: dict[int, str] = {
    401: "No API key, or not a valid one (the answer carries `WWW-Authenticate: Bearer`)",
    403: "The API key lacks the role this call needs, or may not act on the namespace",
    413: f"The body is larger than {human_size(DEFAULT_BODY_LIMIT)}",
    422: "The request is not valid: the message names each bad field and why",
    503: "The API is not configured correctly: its log says why",
}
# Of the routes that queue a task: the broker may refuse it for a while.
QUEUE_UNAVAILABLE = (
    503,
    "The API is not configured correctly (its log says why), or the broker did not take "
    "the task: try again after `Retry-After` seconds",
)


def errors(*answers: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route: each code with WHY's reason, or the (code, reason) given."""
    responses: dict[int | str, dict[str, Any]] = {}
    for answer in answers:
        code, why = answer if isinstance(answer, tuple) else (answer, WHY[answer])
        responses[code] = {"model": Message, "description": why}
    return responses


def needs(role: Role) -> str:
    """The sentence of a route's description naming the role it needs (api.scopes.ROLE_OF)."""
    return (
        f"**Needs** an API key with the `{role}` role whose namespaces include the one "
        "the call acts on."
    )

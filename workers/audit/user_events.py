"""Recording user events in the catalog: Backfleet's own operations and in-process callers.

`record_system_event` is for Backfleet's own operations (backups, restores,
verifications, deletions): it never raises, since an audit record must never
fail the work it records; a failure is logged, redacted. `record_user_events`
is the helper for in-process callers of the platform: the same validation as
`POST /athena/api/v1/userevents`, and it raises on bad input.
"""

import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from workers import fleet
from workers.audit.catalog import NewEvent, insert_events
from workers.audit.lines import cut_payload, validate_events
from workers.audit.scope import placed
from workers.catalog.db import session_scope
from workers.redact import redact
from workers.services_config import FleetConfig
from workers.settings import Settings, get_settings

log = logging.getLogger(__name__)

SYSTEM_OP_TYPE = "System"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def settings_secrets(settings: Settings) -> list[str]:
    """Secret values the settings hold (and the services' passwords when the fleet loads)."""
    try:
        return fleet.current_fleet().secrets()
    except Exception:
        return fleet.settings_secrets(settings)


def fleet_config() -> FleetConfig | None:
    """The fleet's config, or None where this process has none (a bare catalog tool)."""
    try:
        return fleet.current_fleet().config
    except Exception:
        return None


def placed_namespaces(namespace: str, also_in: Iterable[str] = ()) -> list[str]:
    """Where an event of `namespace` (and of each of `also_in`) is recorded, each once.

    `namespace` is placed by workers.audit.scope.placed (the default namespace
    stands in for one the fleet does not configure); an `also_in` name the
    fleet does not configure is left out. Without a fleet config the names stay
    as given: Backfleet's own operations name only namespaces some config held.
    """
    config = fleet_config()
    if config is None:
        return list(dict.fromkeys([namespace, *also_in]))
    extra = [name for name in also_in if name in config.namespaces]
    return list(dict.fromkeys([placed(config, namespace), *extra]))


def store_events(database_url: str, events: Sequence[NewEvent]) -> int:
    """Insert events in one transaction: all of them or none."""
    with session_scope(database_url) as session:
        return insert_events(session, events=events)


def record_system_event(
    *,
    namespace: str,
    name: str,
    params: Mapping[str, str] | None = None,
    payload: str = "",
    response_code: int = 200,
    user_email: str = "backfleet",
    customer_name: str = "",
    also_in: Sequence[str] = (),
) -> None:
    """Record one of Backfleet's own operations (opType "System", nameHints [name]).

    The event goes to `namespace` and each of `also_in` (a restore's source),
    as `placed_namespaces` says. A no-op unless ENABLE_USER_EVENTS is true.
    Never raises.
    """
    settings: Settings | None = None
    secrets: list[str] = []
    try:
        settings = get_settings()
        if not settings.enable_user_events:
            return
        secrets = settings_secrets(settings)
        targets = placed_namespaces(namespace, also_in)
        template = NewEvent(
            namespace=namespace,
            op_type=SYSTEM_OP_TYPE,
            created_at=now_ms(),
            name_hints=(name,),
            user_email=user_email,
            customer_name=customer_name,
            response_code=response_code,
            request_params={
                **({} if namespace in targets else {"namespace": namespace}),  # placed elsewhere
                **{str(k): redact(str(v), secrets) for k, v in (params or {}).items()},
            },
            request_payload=cut_payload(redact(payload, secrets)),
        )
        events = [dataclasses.replace(template, namespace=target) for target in targets]
        store_events(settings.database_url, events)
    except Exception as exc:
        log.warning(
            "could not record the %s event of namespace %s: %s",
            name,
            namespace,
            redact(f"{type(exc).__name__}: {exc}", secrets),
        )


def record_user_events(
    lines: Iterable[Mapping[str, Any]],
    *,
    namespace: str,
    settings: Settings | None = None,
) -> int:
    """Record events given in the line format (dicts with opType, createdAt, …).

    For in-process callers of the platform. Validated like the API's
    `POST /userevents` (InvalidEventsError names the bad ones, nothing is stored);
    returns how many were stored. A no-op (0) unless ENABLE_USER_EVENTS is true.
    """
    settings = settings or get_settings()
    events = validate_events(list(enumerate(lines, start=1)))
    if not settings.enable_user_events:
        return 0
    config = fleet_config()
    if config is not None:
        config.services_of(namespace)  # ConfigError: events only for a configured namespace
    return store_events(settings.database_url, [NewEvent.of_line(namespace, e) for e in events])


def payload_json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)

"""Which namespaces a call acted on, as the code that resolved them says (for the audit trail).

The API's audit middleware opens a scope per request (`noting`); whatever resolves
a namespace for the call (api/deps.resolve_namespace, a restore's source in
workers.operations.jobs) tells it with `acted_on`. The middleware then records the call in
those namespaces, not in whatever the query or body happened to name. Outside a
scope (the CLI, the workers) `acted_on` does nothing. The scope is a mutable list
in a context variable: FastAPI runs sync handlers in a copy of the request's
context, and a copy still shares the list.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from workers.services_config import FleetConfig

_noted: ContextVar[list[str] | None] = ContextVar("backfleet_audit_namespaces", default=None)


@contextmanager
def noting() -> Iterator[list[str]]:
    """A scope whose list collects, in order, each namespace the call acted on."""
    found: list[str] = []
    token = _noted.set(found)
    try:
        yield found
    finally:
        _noted.reset(token)


def acted_on(namespace: str) -> None:
    found = _noted.get()
    if found is not None and namespace not in found:
        found.append(namespace)


def placed(config: FleetConfig, namespace: str) -> str:
    """The namespace an event goes to: its own when configured, else the fleet's default.

    Store prefixes and metric labels follow an event's namespace: a name a caller
    invents must create neither. The default keeps the record (dropping it would
    lose what happened); the name asked for stays in the event's parameters.
    """
    return namespace if namespace in config.namespaces else config.default_namespace

"""`backfleet check`: every piece the fleet needs, tried for real, each with a clear verdict."""

import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from workers.catalog.db import get_engine
from workers.catalog.migrate import alembic_config
from workers.errors import ConfigError, reason_of
from workers.fleet import Fleet
from workers.monitoring.redis_checks import eviction_problem
from workers.monitoring.redis_client import CHECK, redis_client
from workers.redact import redact
from workers.services_config import ServiceSpec
from workers.services_config.spec import ROLE_PASSWORDS_NEED_ENCRYPTION
from workers.settings import Settings
from workers.sources import class_of

PROBE_PREFIX = ".backfleet-probe/"


@dataclass(frozen=True)
class Verdict:
    name: str
    ok: bool
    detail: str


Check = tuple[str, Callable[[], str]]


def run_checks(
    fleet: Fleet, first: Sequence[Check] = (), last: Sequence[Check] = ()
) -> Iterator[Verdict]:
    """Each check's verdict; `first` and `last`: checks of layers above this one (the keys,
    the `pitr` services' replication: the CLI's)."""
    checks: list[Check] = [
        *first,
        ("catalog", lambda: check_catalog(fleet)),
        ("broker", lambda: check_broker(fleet.settings.broker_url)),
        ("store", lambda: check_store(fleet)),
    ]
    for namespace, services in sorted(fleet.config.namespaces.items()):
        for name, spec in sorted(services.items()):
            checks.append(
                (f"{namespace}/{name}", lambda spec=spec: check_source(spec, fleet.settings))  # type: ignore[misc]
            )
    checks.extend(last)
    for name, check in checks:
        try:
            yield Verdict(name, True, check())
        except Exception as exc:
            reason = reason_of(exc)
            yield Verdict(name, False, redact(reason, fleet.secrets()))


def check_catalog(fleet: Fleet) -> str:
    url = fleet.settings.database_url
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with get_engine(url).connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        raise ConfigError(f"catalog is at revision {current}, not {head}: run `backfleet migrate`")
    return f"reachable, at revision {head}"


def check_broker(url: str) -> str:
    client = redis_client(url, CHECK)
    try:
        client.ping()
    finally:
        client.close()
    if problem := eviction_problem(url):
        raise ConfigError(problem)
    return "reachable, maxmemory-policy noeviction"


def check_store(fleet: Fleet) -> str:
    store = fleet.store
    store.check()
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    store.put_object(key, b"backfleet probe")
    try:
        if not store.exists(key):
            raise ConfigError("a probe object was written but cannot be found again")
    finally:
        store.delete(key)
    return f"{store.kind} store writable (a probe object was written and deleted)"


def check_source(spec: ServiceSpec, settings: Settings | None = None) -> str:
    # The kind's module (psycopg…) is imported only when a service of that kind is checked.
    if spec.role_passwords and settings is not None and settings.backup_encryption_key is None:
        raise ConfigError(ROLE_PASSWORDS_NEED_ENCRYPTION)
    verdict = class_of(spec).probe(spec)
    if spec.hooks is None:
        return verdict
    hooks = [argv for argv in (spec.hooks.pre, spec.hooks.post) if argv]
    missing = [argv[0] for argv in hooks if shutil.which(argv[0]) is None]
    if missing:
        raise ConfigError(f"hook program not installed: {', '.join(missing)}")
    return f"{verdict}; hook programs found"

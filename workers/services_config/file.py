"""The services file as a whole: its two shapes, its namespaces, and each service's policy."""

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from workers.errors import ConfigError, InvalidRequestError
from workers.services_config.policy import RetentionSpec, ServicePolicy
from workers.services_config.spec import ServiceSpec, check_dns_label
from workers.settings import Settings, parse_duration, parse_size

DEFAULT_NAMESPACE = "app"


def _size(value: object) -> object:
    """`500GiB`, `2TB` or a number of bytes; 0 turns a fleet-wide budget off."""
    return parse_size(value) if isinstance(value, str) else value


# A namespace's own storage budget (STORAGE_BUDGET_BYTES when unset).
StorageBudget = Annotated[int, BeforeValidator(_size), Field(ge=0)]


class _NamespaceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    services: Annotated[dict[str, ServiceSpec], Field(min_length=1)]
    retention: RetentionSpec | None = None
    storage_budget: StorageBudget | None = None


class _FileBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str | None = None
    services: dict[str, ServiceSpec] | None = None
    retention: RetentionSpec | None = None  # of the single namespace
    storage_budget: StorageBudget | None = None  # of the single namespace
    namespaces: dict[str, _NamespaceBody] | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> "_FileBody":
        if (self.services is None) == (self.namespaces is None):
            raise ValueError("give either [services.<name>] or [namespaces.<ns>.services.<name>]")
        if self.namespaces is not None and self.storage_budget is not None:
            raise ValueError(
                "storage_budget belongs in each [namespaces.<ns>] table when namespaces are used"
            )
        return self


@dataclass(frozen=True)
class FleetConfig:
    """Every namespace the fleet protects, with its services by name."""

    default_namespace: str
    namespaces: dict[str, dict[str, ServiceSpec]]
    retention: dict[str, RetentionSpec] = field(default_factory=dict)  # per namespace
    # A namespace's own `storage_budget` in bytes (0: none), over STORAGE_BUDGET_BYTES.
    storage_budgets: dict[str, int] = field(default_factory=dict)

    def storage_budget_of(self, namespace: str, settings: Settings) -> int | None:
        """The stored bytes the namespace may reach: its `storage_budget`, else
        STORAGE_BUDGET_BYTES; None when that is 0 (no budget)."""
        budget = self.storage_budgets.get(namespace, settings.storage_budget_bytes)
        return budget or None

    def services_of(self, namespace: str) -> dict[str, ServiceSpec]:
        try:
            return self.namespaces[namespace]
        except KeyError:
            known = ", ".join(sorted(self.namespaces))
            raise ConfigError(
                f"namespace {namespace!r} is not configured (known: {known})"
            ) from None

    def services_for_backup(self, namespace: str, *, only_config: bool) -> list[str]:
        """The services a backup of `namespace` takes, in name order: all, or only those
        marked `config = true`. A request, a scheduled run and a dry run all ask this."""
        specs = self.services_of(namespace)
        names = sorted(name for name, spec in specs.items() if spec.config or not only_config)
        if not names:
            raise InvalidRequestError(
                f"namespace {namespace} has no service marked `config = true` for an "
                "onlyConfig backup"
            )
        return names

    def services_by_cron(self, namespace: str, regular_schedule: str) -> dict[str, list[str]]:
        """Each cron the namespace backs up on, with its services in name order; a
        service without a `schedule` of its own follows `regular_schedule`. Beat's
        schedule and the health report's next backup both read it."""
        by_cron: dict[str, list[str]] = {}
        for name, spec in sorted(self.services_of(namespace).items()):
            by_cron.setdefault(spec.schedule or regular_schedule, []).append(name)
        return by_cron

    def policy_of(self, namespace: str, service: str, settings: Settings) -> ServicePolicy:
        """The service's policy: its own keys, else the namespace's `[retention]`, else
        the settings (workers/services_config/policy.py has the table)."""
        spec = self.services_of(namespace)[service]
        retention = RetentionSpec.from_settings(settings)
        for layer in (self.retention.get(namespace), spec.retention):
            if layer is not None:
                retention = layer.over(retention)
        if spec.max_age is not None:
            max_age: int | None = parse_duration(spec.max_age)
        else:
            max_age = None if spec.schedule else settings.max_age_seconds

        def duration(own: str | None, default: str) -> int:
            return parse_duration(own if own is not None else default)

        return ServicePolicy(
            retention=retention,
            max_age=max_age,
            rto=duration(spec.rto, settings.backup_rto),
            verify=duration(spec.verify, settings.verify_every),
            test_restore=duration(spec.test_restore, settings.test_restore_every),
        )

    def check_hook_timeouts(self, settings: Settings) -> None:
        """Refuse a `post` hook whose timeout is longer than the time the hard time limit
        leaves after the soft one: that is all `post` has when the soft limit stops the
        backup during the dump (it then runs on, up to the hard limit less a margin:
        workers/operations/hooks.py). `pre` alone may take longer: the soft limit stops it."""
        window = settings.backup_time_limit - settings.backup_soft_time_limit
        problems = []
        for namespace, services in sorted(self.namespaces.items()):
            for name, spec in sorted(services.items()):
                hooks = spec.hooks
                if hooks is None or not hooks.post:
                    continue
                seconds = hooks.timeout_seconds(settings.hook_timeout_seconds)
                if seconds <= window:
                    continue
                where = f"service {name} (namespace {namespace})"
                if hooks.timeout is not None:
                    what = f"{where}: hooks.timeout {hooks.timeout} ({seconds} s)"
                    fix = "shorten it"
                else:
                    what = f"BACKUP_HOOK_TIMEOUT {settings.backup_hook_timeout} ({seconds} s), "
                    what += f"the timeout of the post hook of {where},"
                    fix = "shorten it or give the service its own hooks.timeout"
                problems.append(
                    f"{what} is longer than BACKUP_TIME_LIMIT - BACKUP_SOFT_TIME_LIMIT "
                    f"({window} s), all a post hook has once the soft time limit stops the "
                    f"backup: {fix}, or raise BACKUP_TIME_LIMIT (below "
                    "CELERY_VISIBILITY_TIMEOUT)"
                )
        if problems:
            raise ConfigError("; ".join(problems))


def parse_fleet_config(text: str, *, namespace_override: str | None = None) -> FleetConfig:
    """Parse the TOML text; ConfigError says which entry is wrong and why."""
    try:
        body = _FileBody.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"services file is not valid TOML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'file'}: "
            f"{item['msg'].removeprefix('Value error, ')}"
            for item in exc.errors()
        )
        raise ConfigError(f"services file: {problems}") from None

    if body.services is not None:
        name = namespace_override or body.namespace or DEFAULT_NAMESPACE
        raw = {name: body.services}
        default = name
        retention = {name: body.retention} if body.retention else {}
        budgets = {} if body.storage_budget is None else {name: body.storage_budget}
    else:
        assert body.namespaces is not None
        raw = {ns: entry.services for ns, entry in body.namespaces.items()}
        retention = {ns: e.retention for ns, e in body.namespaces.items() if e.retention}
        budgets = {
            ns: e.storage_budget
            for ns, e in body.namespaces.items()
            if e.storage_budget is not None
        }
        default = namespace_override or body.namespace or sorted(raw)[0]
        if default not in raw:
            raise ConfigError(f"default namespace {default!r} has no [namespaces.{default}] table")

    namespaces: dict[str, dict[str, ServiceSpec]] = {}
    try:
        for ns, services in raw.items():
            check_dns_label(ns, "namespace")
            namespaces[ns] = {
                svc: spec.model_copy(update={"name": check_dns_label(svc, "service name")})
                for svc, spec in services.items()
            }
    except ValueError as exc:
        raise ConfigError(f"services file: {exc}") from None
    return FleetConfig(
        default_namespace=default,
        namespaces=namespaces,
        retention=retention,
        storage_budgets=budgets,
    )


def load_fleet_config(path: Path, *, namespace_override: str | None = None) -> FleetConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"services file {path} does not exist (set BACKFLEET_CONFIG to its path)"
        ) from None
    return parse_fleet_config(text, namespace_override=namespace_override)

"""What is backed up and restored, and the registry of kinds.

A new kind is a module in this package whose class implements `SourceKind`
(sources/base.py: from_spec, probe, its restore-test target and check, or why a service
of it cannot be drilled) plus one line in `SOURCES` (and its `kind` in services_config.ServiceKind).
`backfleet check`, restores, test restores and recovery read the registry.

A kind may have modes, each a class of its own module chosen by a key of the service
(`MODES`): a postgres service with `pitr = true` is backed up as a physical base backup
(sources/pgbase.py, format `pgbase`) instead of a dump. `class_of(spec)` gives the
class that backs a service up; an artifact is restored by the class of its own format
(`spec_for_format`), so a service's older artifacts still restore after the key changed.
"""

from collections.abc import Sequence
from functools import cache
from importlib import import_module

from workers.services_config import ServiceKind, ServiceSpec
from workers.settings import Settings
from workers.sources.base import Dump, RestoreStream, ScratchRestore, Source, SourceKind

# kind → "module:Class", imported when a service of that kind is first used (each pulls
# its own dependencies: psycopg, tarfile…).
SOURCES: dict[ServiceKind, str] = {
    "postgres": "workers.sources.postgres:PostgresSource",
    "sqlite": "workers.sources.sqlite:SqliteSource",
    "directory": "workers.sources.directory:DirectorySource",
    "command": "workers.sources.command:CommandSource",
}


PGBASE = "pgbase"  # a postgres service's physical base backups (pitr = true)
# mode → "module:Class": a kind's other way of backing up, and the artifact format it makes.
MODES: dict[str, str] = {
    PGBASE: "workers.sources.pgbase:PgBaseSource",
}


@cache
def _load(target: str) -> type[SourceKind]:
    module, _, attribute = target.partition(":")
    cls: type[SourceKind] = getattr(import_module(module), attribute)
    return cls


def source_class(kind: str) -> type[SourceKind]:
    """The class registered for `kind`, its module imported now."""
    return _load(SOURCES[kind])  # type: ignore[index]


def mode_of(spec: ServiceSpec) -> str | None:
    """The mode a service's keys choose (None: its kind's own way)."""
    return PGBASE if spec.kind == "postgres" and spec.pitr else None


def class_of(spec: ServiceSpec) -> type[SourceKind]:
    """The class that backs `spec` up: its mode's, else its kind's."""
    mode = mode_of(spec)
    return _load(MODES[mode]) if mode else source_class(spec.kind)


def spec_for_format(spec: ServiceSpec, fmt: str) -> ServiceSpec:
    """`spec` as it was when an artifact of format `fmt` was made: a postgres service's
    dumps (pgdump) restore as dumps after `pitr` was turned on, its base backups (pgbase)
    as base backups after it was turned off."""
    if spec.kind == "postgres" and fmt in ("pgdump", PGBASE):
        return spec.model_copy(update={"pitr": fmt == PGBASE})
    return spec


def make_source(spec: ServiceSpec, settings: Settings, secrets: Sequence[str] = ()) -> Source:
    """`secrets`: every secret the fleet knows, masked in the tools' messages."""
    return class_of(spec).from_spec(spec, settings, secrets)


__all__ = [
    "MODES",
    "PGBASE",
    "SOURCES",
    "Dump",
    "RestoreStream",
    "ScratchRestore",
    "Source",
    "SourceKind",
    "class_of",
    "make_source",
    "mode_of",
    "source_class",
    "spec_for_format",
]

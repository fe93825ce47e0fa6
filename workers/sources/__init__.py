"""What is backed up and restored, and the registry of kinds.

A new kind is a module in this package whose class implements `SourceKind`
(sources/base.py: from_spec, probe, its restore-test target and check, or why a service
of it cannot be drilled) plus one line in `SOURCES` (and its `kind` in services_config.ServiceKind).
`backfleet check`, restores, test restores and recovery read the registry.
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


@cache
def source_class(kind: str) -> type[SourceKind]:
    """The class registered for `kind`, its module imported now."""
    module, _, attribute = SOURCES[kind].partition(":")  # type: ignore[index]
    cls: type[SourceKind] = getattr(import_module(module), attribute)
    return cls


def make_source(spec: ServiceSpec, settings: Settings, secrets: Sequence[str] = ()) -> Source:
    """`secrets`: every secret the fleet knows, masked in the tools' messages."""
    return source_class(spec.kind).from_spec(spec, settings, secrets)


__all__ = [
    "SOURCES",
    "Dump",
    "RestoreStream",
    "ScratchRestore",
    "Source",
    "SourceKind",
    "make_source",
    "source_class",
]

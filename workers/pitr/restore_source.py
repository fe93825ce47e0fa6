"""Which Source restores an artifact: the one of its own format, a base backup (pgbase)
through a scratch PostgreSQL (pitr/base_restore.py). The restore and the drills ask here.

Light on purpose: the restore and drill operations import it in every worker, and only a
base backup's restore loads psycopg and the scratch server's code (imported when used).
"""

from collections.abc import Mapping, Sequence
from typing import Any

from workers.repository.manifest import ArtifactEntry
from workers.services_config import ServiceSpec
from workers.settings import Settings
from workers.sources import PGBASE, Source, make_source, spec_for_format


def restore_source(
    spec: ServiceSpec, entry: ArtifactEntry, settings: Settings, secrets: Sequence[str] = ()
) -> Source:
    """What restores `entry` into the service `spec` describes: the source of the
    artifact's own format (sources.spec_for_format), a base backup through a scratch."""
    if entry.format != PGBASE:
        return make_source(spec_for_format(spec, entry.format), settings, secrets)
    from workers.pitr.base_restore import through_scratch  # psycopg: only when needed

    target = make_source(spec_for_format(spec, "pgdump"), settings, secrets)
    return through_scratch(target, entry.source, settings)


def drill_source(
    target: Source, entry: ArtifactEntry, settings: Settings, *, timeout: float | None = None
) -> Source:
    """Where a drill restores `entry`: the kind's scratch target, a base backup into it
    through a scratch server (`timeout` bounds that server's recovery)."""
    if entry.format != PGBASE:
        return target
    from workers.pitr.base_restore import through_scratch  # psycopg: only when needed

    return through_scratch(target, entry.source, settings, timeout=timeout)


def checked_facts(source: Source, facts: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """What a drill's check compares the restored target with: a base backup recorded no
    row counts (sources/pgbase.py), so those its scratch server counted at the
    consistent point (`scratch_counts` of a BaseBackupRestore)."""
    counts: dict[str, int] | None = getattr(source, "scratch_counts", None)
    if counts is not None and facts:
        return [{**facts[0], "row_counts": dict(counts)}]
    return list(facts)

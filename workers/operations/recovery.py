"""Putting restore targets right after a restore attempt died half way (a killed worker).

Every source commits in one step (a rename exchange, one database
transaction), so a dead attempt leaves its target either as it was or fully
restored; what it can leave behind is its staging copy, and, for a directory
swapped with two renames where the exchange is unsupported, the old tree
renamed aside with the target missing. `recover()` on each source resolves
that: the old tree goes back if the target is missing, staging copies go.
Run under the namespace lock, at the start of every restore attempt (and by
whatever settles a restore whose worker died).
"""

import logging
from collections.abc import Iterable

from workers.fleet import Fleet
from workers.redact import redact
from workers.sources import make_source

log = logging.getLogger(__name__)


def recover_targets(fleet: Fleet, *, namespace: str, services: Iterable[str]) -> list[str]:
    """Recover the targets of `services` in `namespace`; returns what was not recoverable.

    Never raises: a target that cannot be put right is reported (and logged),
    and the restore that follows fails on it with its own message.
    """
    problems: list[str] = []
    try:
        specs = fleet.config.services_of(namespace)
    except Exception as exc:  # the restore itself then fails with the reason
        return [redact(str(exc), fleet.secrets())]
    for service in services:
        spec = specs.get(service)
        if spec is None:
            continue
        try:
            make_source(spec, fleet.settings).recover()
        except Exception as exc:
            problem = redact(f"{service}: {type(exc).__name__}: {exc}", fleet.secrets())
            log.error("could not recover the target of %s/%s", namespace, problem)
            problems.append(problem)
    return problems

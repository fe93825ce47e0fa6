"""Which namespaces a pass over every backup (verification, retention) visits."""

from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.fleet import Fleet


def namespaces_of(fleet: Fleet) -> list[str]:
    """The configured namespaces and every namespace the catalog has backups of.

    A namespace dropped from the services file keeps its backups: they are still
    verified and still expire.
    """
    with session_scope(fleet.settings.database_url) as session:
        known = queries.backup_namespaces(session)
    return sorted(known | set(fleet.config.namespaces))

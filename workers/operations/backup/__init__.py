"""One backup, start to finish: each service streamed to the store, the manifest last.

Safe to run again for the same backup (a redelivered task): a finished backup
is left alone; an artifact (or volume) already stored is kept (except the
volumes of a service whose `pre` hook runs again: they are dumped again from
the state it makes); an upload a dead attempt left is resumed from the parts
the catalog recorded, or aborted and started again; no row is ever duplicated.

The modules: run (the backup, start to finish), service (one service: hooks, volumes,
redeliveries), artifact (one volume stored as one artifact, and its catalog row),
outcome (what it ended with).
"""

from workers.operations.backup.artifact import COMPRESSION
from workers.operations.backup.outcome import BackupOutcome, describe
from workers.operations.backup.run import run_backup

__all__ = ["COMPRESSION", "BackupOutcome", "describe", "run_backup"]

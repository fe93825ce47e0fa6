"""What a backup ended with, and an error as an operator reads it (secrets masked)."""

from dataclasses import dataclass

from workers.errors import reason_of
from workers.fleet import Fleet
from workers.redact import redact


@dataclass(frozen=True)
class BackupOutcome:
    namespace: str
    timestamp: str
    status: str
    error: str | None = None
    ran: bool = True  # False: a redelivery found the backup already finished


def describe(exc: BaseException, fleet: Fleet) -> str:
    """An operator-readable reason, with every known secret masked."""
    return redact(reason_of(exc), fleet.secrets())

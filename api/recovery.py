"""`GET /athena/api/v1/report/recovery`: each service's recovery-time evidence, as
`backfleet report --json` prints it (workers/monitoring/recovery.py computes both).

A `read` route like the other status reads; without `namespace` it answers for every
configured namespace the key may act on, so a scoped key sees only its own services.
"""

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from workers.api_keys import ApiKey
from workers.fleet import Fleet
from workers.monitoring.recovery import ServiceRecovery, recovery_report


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class RecoveryRunReport(_Camel):
    """One drill (into scratch) or user restore of a service, judged by its RTO."""

    timestamp: str  # the backup restored
    source_namespace: str
    started_at: datetime
    finished_at: datetime
    seconds: float
    status: str
    rto_seconds: int
    met_rto: bool
    bytes_read: int
    counts_expected: dict[str, int] | None
    counts_found: dict[str, int] | None
    counts_ok: bool | None  # null: nothing recorded at backup time to compare with
    error: str | None
    # A pitr service's base backup recovered to a moment (a drill's random one, a user's
    # targetTime), and the last transaction that recovery replayed; null: not to a moment.
    target_time: datetime | None
    replayed_to: datetime | None
    # Why a drill of a pitr service's base backup went to its consistent point instead
    # (no recoverable window, the WAL does not continue from that backup).
    target_skipped: str | None


class ServiceRecoveryReport(_Camel):
    namespace: str
    service: str
    kind: str
    drillable: bool
    not_drilled: str | None  # why it cannot be drilled (a command without test_restore_command)
    rto_seconds: int
    test_restore_seconds: int
    last_drill: RecoveryRunReport | None
    met_rto: bool | None  # of the last drill; null: never drilled
    failing: list[str]  # backups whose latest drill failed
    overdue: bool
    due_by: datetime | None
    last_restore: RecoveryRunReport | None  # the last restore a user ran
    healthy: bool

    @classmethod
    def of(cls, item: ServiceRecovery) -> "ServiceRecoveryReport":
        return cls.model_validate(item.as_dict())


def recovery_for(
    fleet: Fleet, caller: ApiKey, namespace: str | None
) -> list[ServiceRecoveryReport]:
    """`namespace` (already checked against the key), else every one the key may act on."""
    chosen = (
        [namespace]
        if namespace is not None
        else [ns for ns in sorted(fleet.config.namespaces) if caller.may_act_on(ns)]
    )
    return [ServiceRecoveryReport.of(item) for item in recovery_report(fleet, namespaces=chosen)]

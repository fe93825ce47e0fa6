"""A catalog worth looking at, written straight into its tables: backups of every status
with artifacts, a verification, a size anomaly, a warning, drills (one within its RTO, one
beyond), open and resolved alerts, and a failed backup whose error holds markup.

Shared by tests/unit/test_catalog_page.py and tests/integration/test_catalog_page_browser.py,
with the services of tests.unit.test_api.CONFIG (`app`: postgres, gitserver, settings;
`team-b`: files).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from workers.catalog.db import session_scope
from workers.catalog.models import (
    DRILL,
    FAILED,
    RUNNING,
    SUCCESS,
    Alert,
    Artifact,
    Backup,
    RecoveryRun,
)
from workers.timestamps import format_timestamp, utcnow

# What a careless page would run or render as markup: it must show as text.
SCRIPT_ERROR = '<script>alert("catalog")</script> pg_dump: connection to server refused'
ALERT_TEXT = 'backups of app are late: <img src=x onerror="alert(1)"> <b>check the worker</b>'
KINDS = {
    "postgres": "postgres",
    "gitserver": "directory",
    "settings": "sqlite",
    "files": "directory",
}


@dataclass(frozen=True)
class Seeded:
    good: str  # app's newest successful backup, verified, with a size anomaly
    failed: str  # app's failed backup, its error SCRIPT_ERROR
    running: str  # app's running backup
    team_b: str  # team-b's only backup


def add_backup(
    url: str,
    *,
    namespace: str,
    moment: datetime,
    status: str,
    sizes: dict[str, tuple[int, int]],  # service -> (stored, source bytes)
    seconds: float | None = None,
    services: list[str] | None = None,  # else those of `sizes`
    **fields: object,
) -> tuple[str, int]:
    """A backup and one artifact per service of `sizes`; its timestamp and id."""
    stamp = format_timestamp(moment)
    with session_scope(url) as session:
        backup = Backup(
            namespace=namespace,
            timestamp=stamp,
            status=status,
            services=services or sorted(sizes),
            trigger="schedule",
            created_at=moment,
            started_at=moment if seconds is not None or status == RUNNING else None,
            finished_at=moment + timedelta(seconds=seconds) if seconds is not None else None,
            size=sum(stored for stored, _ in sizes.values()) if status == SUCCESS else None,
            **fields,
        )
        for service, (stored, source) in sizes.items():
            backup.artifacts.append(
                Artifact(
                    service=service,
                    kind=KINDS[service],
                    key=f"{namespace}/{stamp}/{service}.bin",
                    format="tar",
                    compression="zstd",
                    status=status,
                    size=stored,
                    source_size=source,
                    started_at=moment,
                    finished_at=moment + timedelta(seconds=seconds or 0),
                )
            )
        session.add(backup)
        session.flush()
        return stamp, backup.id


def add_drill(
    url: str, *, service: str, backup: tuple[str, int], seconds: float, status: str = SUCCESS
) -> None:
    finished = utcnow() - timedelta(hours=1)
    with session_scope(url) as session:
        session.add(
            RecoveryRun(
                namespace="app",
                service=service,
                trigger=DRILL,
                kind=KINDS[service],
                backup_id=backup[1],
                source_namespace="app",
                timestamp=backup[0],
                status=status,
                started_at=finished - timedelta(seconds=seconds),
                finished_at=finished,
                seconds=seconds,
                rto_seconds=4 * 3600,
                bytes_read=1234,
            )
        )


def seed_catalog(url: str) -> Seeded:
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    app_sizes = {
        "postgres": (48 * 2**20, 310 * 2**20),
        "gitserver": (120 * 2**20, 180 * 2**20),
        "settings": (2**16, 2**18),
    }
    first = add_backup(
        url, namespace="app", moment=day, status=SUCCESS, sizes=app_sizes, seconds=95
    )
    good = add_backup(
        url,
        namespace="app",
        moment=day + timedelta(hours=6),
        status=SUCCESS,
        sizes={**app_sizes, "postgres": (12 * 2**20, 80 * 2**20)},
        seconds=81.5,
        verified=SUCCESS,
        verified_at=day + timedelta(hours=7),
        size_anomaly="postgres: 80.0 MiB is 74% below the median of its last 7 (310.0 MiB)",
        warning="post hook of gitserver: exit 1",
    )
    failed = add_backup(
        url,
        namespace="app",
        moment=day + timedelta(hours=12),
        status=FAILED,
        sizes={"postgres": (0, 0)},
        seconds=3,
        error=SCRIPT_ERROR,
    )
    running = add_backup(  # just started: no artifact yet
        url,
        namespace="app",
        moment=day + timedelta(hours=18),
        status=RUNNING,
        sizes={},
        services=sorted(app_sizes),
    )
    team_b = add_backup(
        url,
        namespace="team-b",
        moment=day + timedelta(hours=3),
        status=SUCCESS,
        sizes={"files": (5 * 2**20, 9 * 2**20)},
        seconds=12,
    )
    add_drill(url, service="postgres", backup=good, seconds=42.0)
    add_drill(url, service="gitserver", backup=first, seconds=5 * 3600.0)
    with session_scope(url) as session:
        session.add_all(
            [
                Alert(
                    condition=f"backup.failed:app:{failed[0]}",
                    event="backup.failed",
                    namespace="app",
                    service="postgres",
                    timestamp=failed[0],
                    text=ALERT_TEXT,
                    opened_at=day + timedelta(hours=12, minutes=1),
                ),
                Alert(
                    condition="backup.stale:app",
                    event="backup.stale",
                    namespace="app",
                    text="a resolved alert, not shown",
                    opened_at=day,
                    resolved_at=day + timedelta(hours=1),
                ),
                Alert(
                    condition="backup.stale:team-b",
                    event="backup.stale",
                    namespace="team-b",
                    text="team-b's own alert",
                    opened_at=day,
                ),
            ]
        )
    return Seeded(good[0], failed[0], running[0], team_b[0])

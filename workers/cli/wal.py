"""`backfleet wal`: the WAL streamers of `pitr` services (workers/pitr/), and their slots.

- `backfleet wal`: runs a streamer for every `pitr` service of every configured namespace
  (threads of this process) until SIGTERM or SIGINT; each is a standby until its service's
  lock is free, so any number of `backfleet wal` may run (one streams each service).
- `backfleet wal status [--json]`: per service, the slot, what it holds, what was shipped
  last and the lag, as the catalog says.
- `backfleet wal drop-slot SERVICE [--namespace NS] [--force]`: removes its slot.
- `backfleet wal prepare-datadir SERVICE --to-time T --into DIR`: a data directory that
  recovers to T (pitr/datadir.py), the runbook alternative to a restore into the live one.
"""

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from workers.cli.commands import _fail, main
from workers.cli.exits import FAILED
from workers.pitr.lsn import format_lsn  # a few lines of arithmetic: cheap to import

if TYPE_CHECKING:
    from workers.monitoring.wal import WalStatus

LOG_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


@main.group(invoke_without_command=True)
@click.pass_context
def wal(ctx: click.Context) -> None:
    """Stream the WAL of every `pitr` service until SIGTERM or SIGINT (no subcommand).

    Each service is streamed by one `backfleet wal` across the fleet (a lock in Redis);
    the others stand by and take over within WAL_LOCK_TTL when it dies."""
    if ctx.invoked_subcommand is not None:
        return
    from workers.fleet import current_fleet
    from workers.pitr.runner import run_streamers

    fleet = current_fleet()
    _log_to_stderr(fleet.settings.backfleet_log_level, fleet.secrets())
    stop = threading.Event()

    def asked_to_stop(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("workers.cli.wal").info("stopping the WAL streamers")
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, asked_to_stop)
    run_streamers(fleet, stop)


@wal.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def wal_status(as_json: bool) -> None:
    """Per `pitr` service: its slot and the WAL it holds on the server, the last segment
    shipped, the shipped position and when, the lag, the gaps recorded. Exit 0."""
    from workers.fleet import current_fleet
    from workers.monitoring.wal import wal_report

    report = wal_report(current_fleet())
    if as_json:
        from workers.cli.output import to_json

        click.echo(
            to_json(
                [
                    {
                        **_as_dict(item),
                        "serverLsn": _lsn(item.server_lsn),
                        "shippedLsn": _lsn(item.shipped_lsn),
                    }
                    for item in report
                ]
            )
        )
        return
    for line in status_table(report):
        click.echo(line)


@wal.command("drop-slot")
@click.argument("service")
@click.option("--namespace", default=None, help="Its namespace [the default one].")
@click.option("--force", is_flag=True, help="Even while a streamer holds the service.")
def drop_slot(service: str, namespace: str | None, force: bool) -> None:
    """Drop SERVICE's replication slot (`backfleet_<namespace>_<service>`) on its server,
    so the WAL it held can be recycled: when a service leaves PITR (set `pitr = false`,
    restart `backfleet wal`, then drop it). Refused while a streamer holds the service,
    unless --force (the streamer would make the slot again and record a gap)."""
    from workers.errors import ConflictError
    from workers.fleet import current_fleet
    from workers.pitr.drop import drop_service_slot

    fleet = current_fleet()
    namespace = namespace or fleet.config.default_namespace
    try:
        done = drop_service_slot(fleet, namespace, service, force=force)
    except ConflictError as exc:
        _fail(str(exc), code=FAILED)
    if done.existed:
        click.echo(f"dropped replication slot {done.slot} on {done.host}")
    else:
        click.echo(f"no replication slot {done.slot} on {done.host}: nothing to drop")


@wal.command("prepare-datadir")
@click.argument("service")
@click.option(
    "--to-time", "to_time", required=True, metavar="RFC3339", help="The moment to recover to."
)
@click.option(
    "--into",
    "into",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A new or empty folder: the data directory is written there.",
)
@click.option("--namespace", default=None, help="Its namespace [the default one].")
def prepare_datadir_command(service: str, to_time: str, into: Path, namespace: str | None) -> None:
    """Write a data directory of SERVICE that recovers to --to-time when a PostgreSQL
    starts on it: the base backup before the moment, its WAL in pg_wal/, recovery.signal
    and the target in postgresql.auto.conf (each object verified). Nothing is started:
    the runbook alternative to a restore into the live database."""
    from workers.fleet import current_fleet
    from workers.pitr.datadir import prepare_datadir
    from workers.timestamps import format_moment, parse_moment

    try:
        target = parse_moment(to_time)
    except ValueError as exc:
        _fail(f"--to-time: {exc}")
    fleet = current_fleet()
    namespace = namespace or fleet.config.default_namespace
    done = prepare_datadir(
        fleet,
        namespace=namespace,
        service=service,
        target=target,
        into=into,
        say=lambda text: click.echo(text, err=True) if text else None,
    )
    click.echo(
        f"{into}: base backup {done.timestamp} and {done.wal_files} WAL files; it recovers to "
        f"{format_moment(target)} and promotes when PostgreSQL starts on it (owned by the "
        "server's user, mode 0700)"
    )


def status_table(report: "list[WalStatus]") -> list[str]:
    from workers.monitoring.health import span

    if not report:
        return ["no pitr service is configured"]
    lines = [
        f"{'NAMESPACE':<14} {'SERVICE':<14} {'STREAMING':<22} {'RETAINED':>9} "
        f"{'LAST SEGMENT':<32} {'SHIPPED LSN':<14} {'SHIPPED AT':<16} {'LAG':>8} GAPS"
    ]
    for item in report:
        streaming = (item.holder or "?") if item.streaming else "no"
        retained = "-" if item.retained_bytes is None else f"{item.retained_bytes / 2**20:.0f}M"
        shipped = item.shipped_at.strftime("%Y-%m-%d %H:%M") if item.shipped_at else "-"
        lag = "-" if item.lag_seconds is None else span(item.lag_seconds)
        if item.lag_seconds is not None and item.lag_seconds < 60:
            lag = f"{item.lag_seconds:.0f} s"
        lines.append(
            f"{item.namespace:<14} {item.service:<14} {streaming[:22]:<22} {retained:>9} "
            f"{item.last_segment or '-':<32} {_lsn(item.shipped_lsn) or '-':<14} "
            f"{shipped:<16} {lag:>8} {item.gaps}"
        )
        if item.slot is not None:
            lines.append(f"    slot {item.slot} ({item.wal_status or 'unknown'})")
        if item.last_gap is not None and item.last_gap_at is not None:
            lines.append(f"    last gap {item.last_gap_at:%Y-%m-%d %H:%M}: {item.last_gap}")
        if item.error:
            lines.append(f"    error: {item.error}")
    return lines


def _lsn(value: int | None) -> str | None:
    return None if value is None else format_lsn(value)


def _as_dict(item: "WalStatus") -> dict[str, object]:
    from workers.cli.output import plain

    found = plain(item)
    assert isinstance(found, dict)
    return found


class _Redacting(logging.Filter):
    """Masks the fleet's secrets in every record (the messages are redacted where they are
    made; this is the net under them)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        from workers.redact import redact

        record.msg, record.args = redact(record.getMessage(), self.secrets), None
        return True


def _log_to_stderr(level: str, secrets: list[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_Redacting(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)

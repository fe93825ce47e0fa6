"""`backfleet alerts`: the open alerts (and, with --all, those resolved lately), as a table
or JSON: what `backfleet status` counts."""

import json
from typing import TYPE_CHECKING

import click

from workers.cli.commands import _fail, main

if TYPE_CHECKING:
    from workers.monitoring.alert_list import ListedAlert

RECENT = "7d"  # --all without --since


@main.command()
@click.option("--namespace", default=None, help="Only this namespace [every one].")
@click.option("--all", "everything", is_flag=True, help=f"Also those resolved lately [{RECENT}].")
@click.option("--since", default=None, help="With resolved ones since DURATION ago (2h, 7d…).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def alerts(namespace: str | None, everything: bool, since: str | None, as_json: bool) -> None:
    """The open alerts, newest first: event, namespace, service, when opened (and resolved),
    where the webhook messages went, and the message as recorded (redacted). `--all` adds
    those resolved in the last 7 days (`--since` another span) and one-off events (failed
    backups, finished restores). Exit 0 whatever they say (`backfleet status` exits 1)."""
    from datetime import timedelta

    from workers.monitoring.alert_list import list_alerts
    from workers.settings import get_settings
    from workers.timestamps import parse_duration, utcnow

    resolved_since = None
    if everything or since is not None:
        try:
            seconds = parse_duration(since or RECENT)
        except ValueError as exc:
            _fail(f"--since: {exc}")
        resolved_since = utcnow() - timedelta(seconds=seconds)
    found = list_alerts(
        get_settings().database_url, namespace=namespace, resolved_since=resolved_since
    )
    if as_json:
        click.echo(json.dumps([item.as_dict() for item in found], indent=2))
        return
    for line in alerts_table(found, resolved=resolved_since is not None):
        click.echo(line)


def alerts_table(found: "list[ListedAlert]", *, resolved: bool) -> list[str]:
    """A line per alert, its message indented on the next; a closing line when none."""
    if not found:
        return ["no open alerts" + (", none resolved lately" if resolved else "")]
    lines = [
        f"{'OPENED':<16}  {'RESOLVED':<16}  {'NAMESPACE':<14} {'SERVICE':<14} "
        f"{'EVENT':<20} DELIVERY"
    ]
    for item in found:
        if item.one_off:
            state = "event"
        else:
            state = f"{item.resolved_at:%Y-%m-%d %H:%M}" if item.resolved_at else "OPEN"
        lines.append(
            f"{item.opened_at:%Y-%m-%d %H:%M}  {state:<16}  {item.namespace or '-':<14} "
            f"{item.service or '-':<14} {item.event:<20} {item.delivery_summary()}"
        )
        lines.append(f"    {item.message}")
    return lines

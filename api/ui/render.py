"""The catalog page's HTML: server-rendered strings, every value escaped, no script at all.

Plain strings and `html.escape` rather than a template engine: the page is a few tables,
and Jinja2 would be a new dependency of the API (the venv has it only through a test
tool). Every value from the catalog, the settings or the request goes through `esc` (or
a helper that calls it); the markup around them is constant. The style sheet is inline
and nothing is loaded from anywhere, this host included (the Content-Security-Policy of
api/ui/routes.py forbids it too).
"""

from collections.abc import Iterable
from datetime import datetime
from html import escape
from urllib.parse import urlencode

from api.schemas import BackupSummary
from api.session import LOGIN_PATH, LOGOUT_PATH, PAGE_PATH
from api.ui.view import AlertView, CatalogView, NamespaceView, ServiceView
from workers.catalog.models import FAILED, SUCCESS
from workers.monitoring.recovery import ServiceRecovery

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5rem 2rem; color: #1d232a; }
header { display: flex; align-items: baseline; gap: 1rem; border-bottom: 2px solid #2b5b84;
  padding: .6rem 0; margin-bottom: .8rem; }
header h1 { font-size: 1.3rem; margin: 0; color: #2b5b84; }
header .who { margin-left: auto; color: #555; }
header form { display: inline; margin: 0; }
nav a { margin-right: .8rem; }
h2 { font-size: 1.15rem; margin: 1.4rem 0 .3rem; border-bottom: 1px solid #ccd; }
h3 { font-size: 1rem; margin: .9rem 0 .3rem; color: #333; }
table { border-collapse: collapse; width: 100%; margin-bottom: .4rem; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #e4e6eb;
  vertical-align: top; }
th { background: #f2f4f7; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; white-space: nowrap; }
code, .mono { font-family: ui-monospace, monospace; font-size: 13px; }
.mono { white-space: nowrap; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: .6rem; font-size: 12px;
  font-weight: 600; white-space: nowrap; }
.ok { background: #d8f0dc; color: #17612a; }
.bad { background: #fadadd; color: #8a1520; }
.busy { background: #dfe9f7; color: #234f8a; }
.warn { background: #fcefcf; color: #7a5200; }
.none { background: #eceef1; color: #555; }
.note { color: #555; }
.error { color: #8a1520; white-space: pre-wrap; }
form.login { max-width: 28rem; margin: 3rem auto; padding: 1.2rem 1.5rem;
  border: 1px solid #ccd; border-radius: .4rem; }
form.login input { width: 100%; box-sizing: border-box; padding: .4rem; margin: .3rem 0 .8rem; }
"""


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def human_bytes(size: int | None) -> str:
    if size is None:
        return "—"
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def badge(text: str, kind: str) -> str:
    """`kind` is one of the style's fixed classes, never a value from the catalog."""
    assert kind in ("ok", "bad", "busy", "warn", "none"), kind
    return f'<span class="badge {kind}">{esc(text)}</span>'


def status_badge(status: str | None) -> str:
    if status is None:
        return badge("never", "none")
    kind = {SUCCESS: "ok", FAILED: "bad"}.get(status, "busy")
    return badge(status, kind)


def table(headings: Iterable[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="note">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(heading)}</th>" for heading in headings)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


# --- the catalog ---


def catalog_page(view: CatalogView, *, root: str) -> str:
    caller = view.caller
    who = caller.owner_email or "an API key"
    if caller.customer:
        who += f" ({caller.customer})"
    logout = (
        f'<form method="post" action="{esc(root + LOGOUT_PATH)}">'
        '<button type="submit">Log out</button></form>'
    )
    header = (
        "<header><h1>Backfleet catalog</h1>"
        f'<span class="note">as of {esc(when(view.at))}</span>'
        f'<span class="who">Signed in as {esc(who)}</span>{logout}</header>'
    )
    links = [f'<a href="{esc(root + PAGE_PATH)}">every namespace</a>']
    links += [
        f'<a href="?{esc(urlencode({"namespace": ns.name}))}">{esc(ns.name)}</a>'
        for ns in view.namespaces
    ]
    parts = [header, f"<nav>{''.join(links)}</nav>"]
    if view.service is not None:
        parts.append(f'<p class="note">Only service <b>{esc(view.service)}</b>.</p>')
    if view.fleet_alerts:
        parts.append("<h2>Fleet</h2><h3>Open alerts</h3>" + alerts_table(view.fleet_alerts))
    if not view.namespaces:
        parts.append('<p class="note">This API key may read no configured namespace.</p>')
    parts.extend(namespace_section(ns) for ns in view.namespaces)
    return page("Backfleet catalog", "".join(parts))


def namespace_section(ns: NamespaceView) -> str:
    services = table(
        (
            "Service",
            "Kind",
            "Newest good backup",
            "Stored",
            "Took",
            "RTO",
            "Last drill",
            "RTO evidence",
            "Open alerts",
        ),
        [service_row(ns.name, service) for service in ns.services],
        "No service configured.",
    )
    more = (
        f'<p class="note">The newest {len(ns.backups)} only: <code>GET /athena/api/v1/backups'
        f"?{esc(urlencode({'namespace': ns.name}))}</code> pages through every one.</p>"
        if ns.more
        else ""
    )
    return (
        f'<section id="ns-{esc(ns.name)}"><h2>Namespace {esc(ns.name)}</h2>'
        f"<h3>Services</h3>{services}"
        f"<h3>Open alerts</h3>{alerts_table(ns.alerts)}"
        f"<h3>Recent backups</h3>{backups_table(ns.backups)}{more}</section>"
    )


def service_row(namespace: str, service: ServiceView) -> str:
    item = service.recovery
    link = f"?{esc(urlencode({'namespace': namespace, 'service': item.service}))}"
    newest = service.newest
    stamp = (
        f'<span class="mono">{esc(newest.timestamp)}</span>' if newest else badge("none", "warn")
    )
    alerts = badge(str(service.open_alerts), "bad") if service.open_alerts else "0"
    return (
        "<tr>"
        f'<td><a href="{link}">{esc(item.service)}</a></td>'
        f"<td>{esc(item.kind)}</td>"
        f"<td>{stamp}</td>"
        f'<td class="num">{esc(human_bytes(newest.size if newest else None))}</td>'
        f'<td class="num">{esc(human_seconds(newest.seconds if newest else None))}</td>'
        f'<td class="num">{esc(human_seconds(item.rto))}</td>'
        f"<td>{last_drill(item)}</td>"
        f"<td>{rto_evidence(item)}</td>"
        f"<td>{alerts}</td>"
        "</tr>"
    )


def last_drill(item: ServiceRecovery) -> str:
    drill = item.last_drill
    if drill is None:
        return '<span class="note">never</span>'
    return (
        f"{status_badge(drill.status)} {esc(when(drill.finished_at))}<br>"
        f'<span class="note">backup <span class="mono">{esc(drill.timestamp)}</span>, '
        f"{esc(human_seconds(drill.seconds))}</span>"
    )


def rto_evidence(item: ServiceRecovery) -> str:
    """The verdict of workers/monitoring/recovery.py, in words."""
    notes: list[str] = []
    drill = item.last_drill
    if item.not_drilled is not None:
        verdict = badge("not drillable", "none")
        notes.append(item.not_drilled)
    elif drill is None:
        verdict = badge("never drilled", "warn")
    elif drill.status != SUCCESS:
        verdict = badge("drill failed", "bad")
    elif drill.met_rto:
        verdict = badge("met RTO", "ok")
    else:
        verdict = badge("missed RTO", "bad")
        notes.append(f"{human_seconds(drill.seconds)} > {human_seconds(item.rto)}")
    if item.overdue:
        verdict += " " + badge("overdue", "warn")
        notes.append(f"due by {when(item.due_by)}")
    if item.failing:
        notes.append("failed drills of " + ", ".join(item.failing))
    if drill is not None and drill.error:
        notes.append(drill.error)
    details = "".join(f'<br><span class="note">{esc(note)}</span>' for note in notes)
    return verdict + details


def alerts_table(alerts: list[AlertView]) -> str:
    rows = [
        "<tr>"
        f"<td>{badge(alert.event, 'bad')}</td>"
        f"<td>{esc(alert.service or '—')}</td>"
        f'<td class="mono">{esc(alert.timestamp or "—")}</td>'
        f"<td>{esc(when(alert.opened_at))}</td>"
        f'<td class="error">{esc(alert.text)}</td>'
        "</tr>"
        for alert in alerts
    ]
    return table(("Event", "Service", "Backup", "Opened", "What"), rows, "None open.")


def verification(backup: BackupSummary) -> str:
    if backup.verified is None:
        return '<span class="note">never</span>'
    return f"{status_badge(backup.verified)} {esc(when(backup.verified_at))}"


def backup_notes(backup: BackupSummary) -> str:
    notes = []
    if backup.error:
        notes.append(f'<span class="error">{esc(backup.error)}</span>')
    if backup.warning:
        notes.append(f"{badge('warning', 'warn')} {esc(backup.warning)}")
    if backup.size_anomaly:
        notes.append(f"{badge('size anomaly', 'warn')} {esc(backup.size_anomaly)}")
    return "<br>".join(notes)


def backups_table(backups: list[BackupSummary]) -> str:
    rows = [
        "<tr>"
        f'<td class="mono">{esc(backup.timestamp)}</td>'
        f"<td>{status_badge(backup.status)}</td>"
        f"<td>{esc(backup.trigger)}{' (config)' if backup.only_config else ''}</td>"
        f"<td>{esc(', '.join(backup.services))}</td>"
        f'<td class="num">{esc(human_bytes(backup.stored_size))}</td>'
        f'<td class="num">{esc(human_bytes(backup.source_size))}</td>'
        f'<td class="num">{esc(human_seconds(backup.duration_seconds))}</td>'
        f"<td>{verification(backup)}</td>"
        f"<td>{backup_notes(backup)}</td>"
        "</tr>"
        for backup in backups
    ]
    return table(
        (
            "Timestamp",
            "Status",
            "Trigger",
            "Services",
            "Stored",
            "Source",
            "Took",
            "Verified",
            "Notes",
        ),
        rows,
        "No backup yet.",
    )


# --- logging in ---


def login_page(*, root: str, message: str | None = None, can_log_in: bool = True) -> str:
    problem = f'<p class="error" role="alert">{esc(message)}</p>' if message else ""
    if not can_log_in:
        form = (
            '<p class="note">Signing in here needs a secret to sign sessions with: set '
            "<code>BACKFLEET_UI_SECRET</code> (32+ characters), or give a key in "
            "<code>BACKFLEET_API_KEYS</code>. Meanwhile the page takes the "
            "<code>Authorization</code> header.</p>"
        )
    else:
        form = (
            '<label for="key">API key (with the <code>read</code> role)</label>'
            '<input id="key" name="key" type="password" autocomplete="current-password" '
            'required autofocus><button type="submit">Sign in</button>'
        )
    body = (
        f'<form class="login" method="post" action="{esc(root + LOGIN_PATH)}">'
        f"<h1>Backfleet catalog</h1>{problem}{form}</form>"
    )
    return page("Backfleet catalog: sign in", body)


def error_page(*, root: str, message: str) -> str:
    body = (
        "<header><h1>Backfleet catalog</h1></header>"
        f'<p class="error" role="alert">{esc(message)}</p>'
        f'<p><a href="{esc(root + PAGE_PATH)}">Back to the catalog</a></p>'
    )
    return page("Backfleet catalog", body)

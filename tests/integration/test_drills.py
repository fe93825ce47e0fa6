"""Drills of every kind into scratch, and the recovery-time evidence they leave, on real
servers: PostgreSQL (a source, and a catalog), MariaDB through the command kind, SQLite
files and directories, a real webhook receiver, the API and the CLI.

Time is injected where a test needs the future (`now`), never waited for; a drill's
duration is measured for real.
"""

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.main import create_app
from tests.health_fleet import make_fleet, take_backup
from tests.plugins.mariadb import MariaDBDatabase, client_tool, drill_scripts, dump_tool
from tests.servers import PostgresServer
from tests.unit.test_metrics_status import scrape
from tests.webhook import WebhookServer, webhook_server
from workers.catalog import queries
from workers.catalog.db import dispose_engines, get_engine, session_scope
from workers.catalog.models import Alert, Base, RecoveryRun
from workers.cli import main
from workers.fleet import Fleet
from workers.monitoring.drill_alerts import check_drills
from workers.monitoring.recovery import recovery_report
from workers.operations.restore import run_restore
from workers.operations.restore_test import run_restore_tests

pytestmark = pytest.mark.integration
DAY = 86400
PEOPLE = """
CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=InnoDB;
CREATE TABLE audit_log (id INT PRIMARY KEY AUTO_INCREMENT, what VARCHAR(50)) ENGINE=InnoDB;
INSERT INTO people VALUES (1, 'ada'), (2, 'bob'), (3, 'ünï');
INSERT INTO audit_log (what) VALUES ('created'), ('named');
"""


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


def fleet_of(tmp_path: Path, webhook: WebhookServer, services: str = "", **overrides: Any) -> Fleet:
    """make_fleet's `db` (sqlite) and `files` (directory), plus `services`."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return make_fleet(
        tmp_path,
        extra_services=services,
        alert_webhook_url=SecretStr(webhook.url),
        backfleet_work_dir=work,
        **overrides,
    )


def mariadb_service(
    database: MariaDBDatabase, scripts: Path, *, tamper: str = "", extra: str = ""
) -> str:
    """A `command` service backing `database` up with mariadb-dump, drilled through the
    scripts of docs/concepts/verification-and-drills.md (`tamper`: SQL run on the scratch
    before it is counted)."""
    connection = database.server.client_args()
    dump = [dump_tool(), *connection, "--single-transaction", "--routines", "--triggers"]
    dump += ["--add-drop-database", "--databases", database.name]
    counts, drill = drill_scripts(database.server, scripts, database.name, tamper=tamper)
    return f"""
[namespaces.app.services.mariadb]
kind = "command"
dump_command = {json.dumps(dump)}
restore_command = {json.dumps([client_tool(), *connection])}
format = "sql"
count_command = {json.dumps(counts)}
test_restore_command = {json.dumps(drill)}
{extra}
"""


def runs(fleet: Fleet, service: str | None = None) -> list[RecoveryRun]:
    with session_scope(fleet.settings.database_url) as session:
        query = session.query(RecoveryRun).order_by(RecoveryRun.id)
        if service is not None:
            query = query.filter(RecoveryRun.service == service)
        rows = query.all()
        session.expunge_all()
        return rows


def open_alerts(fleet: Fleet) -> list[str]:
    with session_scope(fleet.settings.database_url) as session:
        rows = session.query(Alert).filter(Alert.resolved_at.is_(None)).all()
        return sorted(row.condition for row in rows)


def drill_events(webhook: WebhookServer) -> list[tuple[str, str]]:
    return [(b["event"], b.get("service", "")) for b in webhook.received if "drill" in b["event"]]


def mariadb_scratches(database: MariaDBDatabase) -> list[str]:
    return database.server.sql("SHOW DATABASES LIKE 'backfleet_drill_%'").split()


def postgres_scratches(server: PostgresServer) -> list[str]:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'backfleet_restore_test_%'"
        ).fetchall()
    return [row[0] for row in rows]


def test_drills_restore_every_kind_into_scratch_with_durations_and_counts(
    tmp_path: Path,
    webhook: WebhookServer,
    pg_database: str,
    postgres_server: PostgresServer,
    mariadb_database: MariaDBDatabase,
) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA billing;"
            "CREATE TABLE public.projects (id int PRIMARY KEY, name text);"
            "INSERT INTO public.projects SELECT g, 'p' || g FROM generate_series(1, 300) g;"
            "CREATE TABLE billing.invoices (id int, total numeric);"
            "INSERT INTO billing.invoices SELECT g, g * 1.5 FROM generate_series(1, 42) g;"
        )
    mariadb_database.sql(PEOPLE)
    seen = tmp_path / "scratch-name"
    service = mariadb_service(mariadb_database, tmp_path / "scripts")
    # Note the scratch name the command was given, then run the docs' drill script.
    drill = re.search(r"test_restore_command = (.*)", service)
    assert drill is not None
    wrapped = ["sh", "-c", 'echo "$BACKFLEET_SCRATCH" > "$0"; exec "$@"', str(seen)]
    service = service.replace(drill.group(1), json.dumps([*wrapped, *json.loads(drill.group(1))]))
    fleet = fleet_of(
        tmp_path,
        webhook,
        service + f'[namespaces.app.services.pg]\nkind = "postgres"\nurl = "{pg_database}"\n',
    )
    stamp = take_backup(fleet)
    # The live data moves on: a drill compares with the backup, and never touches it.
    mariadb_database.sql("INSERT INTO people VALUES (4, 'later')")
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("INSERT INTO public.projects VALUES (1000, 'later')")

    (result,) = run_restore_tests(fleet)
    assert (result.timestamp, result.status, result.error) == (stamp, "Success", None)
    assert result.tested == ["db", "files", "mariadb", "pg"]

    expected = {
        "db": {"nodes": 200},
        "files": {"files": 2, "bytes": 50006},
        "mariadb": {"audit_log": 2, "people": 3},
        "pg": {"billing.invoices": 42, "public.projects": 300},
    }
    recorded = {row.service: row for row in runs(fleet)}
    assert sorted(recorded) == sorted(expected)
    for name, row in recorded.items():
        assert (row.trigger, row.status, row.timestamp, row.error) == (
            "drill",
            "Success",
            stamp,
            None,
        )
        assert row.counts_expected == row.counts_found == expected[name], name
        assert row.seconds > 0 and row.bytes_read > 0 and row.finished_at >= row.started_at
        assert row.rto_seconds == 4 * 3600  # BACKUP_RTO
    assert recorded["mariadb"].kind == "command" and recorded["pg"].kind == "postgres"

    # Scratch only: each scratch is gone, the live data is as it was left.
    assert re.fullmatch(r"backfleet_drill_[0-9a-f]{12}", seen.read_text().strip())
    assert mariadb_scratches(mariadb_database) == []
    assert postgres_scratches(postgres_server) == []
    assert list((tmp_path / "work").iterdir()) == []
    assert mariadb_database.sql("SELECT COUNT(*) FROM people") == "4\n"
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT count(*) FROM public.projects").fetchone() == (301,)

    report = {item.service: item for item in recovery_report(fleet)}
    assert all(item.healthy and item.last_drill for item in report.values())
    assert all(item.last_drill and item.last_drill.met_rto for item in report.values())
    assert drill_events(webhook) == []


def test_a_drill_whose_counts_differ_fails_with_an_alert_until_a_later_drill_passes(
    tmp_path: Path, webhook: WebhookServer, mariadb_database: MariaDBDatabase
) -> None:
    mariadb_database.sql(PEOPLE)
    # The scratch loses a row before it is counted: the counts differ from the backup's.
    tampered = mariadb_service(
        mariadb_database, tmp_path / "tampered", tamper="DELETE FROM people WHERE id = 1"
    )
    fleet = fleet_of(tmp_path, webhook, tampered)
    stamp = take_backup(fleet)

    (result,) = run_restore_tests(fleet)
    assert result.status == "Failed"
    assert "mariadb: row counts differ: people: 3 recorded, 2 restored" in (result.error or "")
    assert result.tested == ["db", "files"]
    (row,) = runs(fleet, "mariadb")
    assert row.status == "Failed" and row.seconds > 0
    assert row.counts_expected == {"audit_log": 2, "people": 3}
    assert row.counts_found == {"audit_log": 2, "people": 2}
    assert mariadb_scratches(mariadb_database) == []
    assert mariadb_database.sql("SELECT COUNT(*) FROM people") == "3\n"  # live: untouched

    # The webhook hears of it: the service's drill, and the backup's verdict (as before).
    assert drill_events(webhook) == [("drill.failed", "mariadb")]
    alert = next(b for b in webhook.received if b["event"] == "drill.failed")
    assert alert["namespace"] == "app" and alert["timestamp"] == stamp
    assert "row counts differ: people: 3 recorded, 2 restored" in alert["text"]
    assert "verify.failed" in webhook.events()
    assert "drill.failed:app:mariadb" in open_alerts(fleet)
    check_drills(fleet)  # judged again (the staleness check): still open, not sent twice
    assert drill_events(webhook) == [("drill.failed", "mariadb")]

    # The scratch restored faithfully, drilled again once due: the alert resolves.
    honest = fleet_of(tmp_path, webhook, mariadb_service(mariadb_database, tmp_path / "honest"))
    later = datetime.now(UTC) + timedelta(days=8)
    (again,) = run_restore_tests(honest, now=later)
    assert (again.timestamp, again.status) == (stamp, "Success")
    assert "drill.failed:app:mariadb" not in open_alerts(honest)
    assert drill_events(webhook) == [("drill.failed", "mariadb")] * 2  # opened, resolved
    resolved = [b for b in webhook.received if b["event"] == "drill.failed"][-1]
    assert resolved["status"] == "resolved" and "RESOLVED: drill.failed" in resolved["text"]
    check_drills(honest)
    assert drill_events(webhook) == [("drill.failed", "mariadb")] * 2


def test_rotation_drills_every_retained_backup_within_the_period(
    tmp_path: Path, webhook: WebhookServer, catalog: str
) -> None:
    fleet = fleet_of(
        tmp_path,
        webhook,
        database_url=catalog,
        test_restore_every="7d",
        test_restore_period="14d",
        verify_sample_size=0,
    )
    start = datetime.now(UTC)
    stamps = [take_backup(fleet, moment=start - timedelta(hours=h)) for h in (5, 4, 3, 2, 1)]
    newest_first = stamps[::-1]

    def drilled(now: datetime) -> list[str]:
        return [result.timestamp for result in run_restore_tests(fleet, now=now)]

    # 5 retained backups, 2 runs a period: 3 a run (each run's results newest first).
    # First the newest never drilled, then those waiting longest: the two oldest.
    first = drilled(start)
    assert first == [newest_first[0], stamps[1], stamps[0]]
    assert drilled(start + timedelta(days=1)) == []  # within its cadence: nothing is due
    # A week on: the two never drilled (the newer first), and the one drilled longest ago.
    second = drilled(start + timedelta(days=7))
    assert sorted(second) == sorted([newest_first[1], newest_first[2], newest_first[0]])
    assert sorted(set(first) | set(second)) == sorted(stamps)  # every one, within 14 days
    for row in runs(fleet):
        assert row.status == "Success" and row.counts_expected == row.counts_found
    by_backup = {
        stamp: {r.service for r in runs(fleet) if r.timestamp == stamp} for stamp in stamps
    }
    assert all(services == {"db", "files"} for services in by_backup.values())


def test_the_rto_is_met_or_missed_and_said_everywhere(
    tmp_path: Path, webhook: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = """
[namespaces.app.services.slow]
kind = "command"
dump_command = ["printf", "a dump"]
restore_command = ["true"]
test_restore_command = ["sh", "-c", "cat > /dev/null; sleep 1.2"]
rto = "{rto}"
[namespaces.app.services.bare]
kind = "command"
dump_command = ["printf", "no drill"]
restore_command = ["true"]
"""
    fleet = fleet_of(tmp_path, webhook, slow.format(rto="1s"))
    stamp = take_backup(fleet)
    run_restore_tests(fleet)

    report = {item.service: item for item in recovery_report(fleet)}
    assert report["slow"].missed_rto and not report["slow"].healthy
    drill = report["slow"].last_drill
    assert drill is not None and drill.seconds >= 1.2 and drill.rto_seconds == 1
    assert not report["db"].missed_rto and report["db"].healthy
    assert report["bare"].not_drilled and "test_restore_command" in report["bare"].not_drilled
    assert drill_events(webhook) == [("drill.rto_missed", "slow")]
    text = webhook.received[-1]["text"]
    assert "slow of namespace app took" in text and "over its RTO of 1 s" in text

    m = scrape(fleet, {"backup": 0})
    label = lambda service: (("namespace", "app"), ("service", service))  # noqa: E731
    assert m[("backfleet_service_rto_seconds", label("slow"))] == 1
    assert m[("backfleet_service_rto_seconds", label("db"))] == 4 * 3600
    assert m[("backfleet_service_last_drill_seconds", label("slow"))] >= 1.2
    assert m[("backfleet_service_drill_met_rto", label("slow"))] == 0
    assert m[("backfleet_service_drill_met_rto", label("db"))] == 1
    assert m[("backfleet_service_last_drill_success", label("slow"))] == 1
    assert m[("backfleet_service_drill_overdue", label("db"))] == 0
    assert m[("backfleet_service_drill_failing", label("db"))] == 0
    assert m[("backfleet_service_drill_configured", label("bare"))] == 0
    assert m[("backfleet_service_drill_configured", label("slow"))] == 1
    assert ("backfleet_service_last_drill_seconds", label("bare")) not in m
    assert m[("backfleet_service_last_drill_timestamp_seconds", label("db"))] > 0
    assert m[("backfleet_alerts_open", (("event", "drill.rto_missed"),))] == 1

    monkeypatch.setattr("workers.fleet.current_fleet", lambda: fleet)
    table = CliRunner().invoke(main, ["report"])
    assert table.exit_code == 1, table.output
    slow_line = next(line for line in table.output.splitlines() if " slow " in line)
    assert stamp in slow_line and "MISSED" in slow_line
    bare_line = next(line for line in table.output.splitlines() if " bare " in line)
    assert "not drilled: not configured" in bare_line

    # With an RTO the drill meets, its next drill closes the alert.
    relaxed = fleet_of(tmp_path, webhook, slow.format(rto="1h"))
    run_restore_tests(relaxed, now=datetime.now(UTC) + timedelta(days=8))
    assert "drill.rto_missed:app:slow" not in open_alerts(relaxed)
    monkeypatch.setattr("workers.fleet.current_fleet", lambda: relaxed)
    ok = CliRunner().invoke(main, ["report", "--json"])
    assert ok.exit_code == 0, ok.output
    answer = json.loads(ok.output)
    rows = {row["service"]: row for row in answer["recovery"]}
    assert [item["namespace"] for item in answer["storage"]] == ["app"]
    assert rows["slow"]["metRto"] is True and rows["slow"]["lastDrill"]["rtoSeconds"] == 3600
    assert rows["bare"]["drillable"] is False and rows["bare"]["lastDrill"] is None


def test_an_overdue_drill_alerts_but_a_fresh_install_waits_for_its_first_run(
    tmp_path: Path, webhook: WebhookServer, catalog: str
) -> None:
    fleet = fleet_of(
        tmp_path,
        webhook,
        database_url=catalog,
        restore_test_schedule="0 4 * * 0",  # Sundays 04:00
        test_restore_every="7d",
    )
    installed = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)  # a Wednesday
    check_drills(fleet, now=installed)  # nothing to drill yet: not overdue
    take_backup(fleet, moment=installed + timedelta(minutes=30))
    # The first drill is due at Sunday's run; a tenth of the 7 d cadence (16.8 h) of grace.
    sunday = datetime(2026, 3, 8, 4, 0, tzinfo=UTC)
    grace = timedelta(hours=16, minutes=48)
    found = {f.service: f for f in check_drills(fleet, now=sunday + grace)}
    assert not found["db"].overdue and found["db"].due_by == sunday + grace
    assert drill_events(webhook) == []
    check_drills(fleet, now=sunday + grace + timedelta(minutes=1))
    assert sorted(drill_events(webhook)) == [("drill.overdue", "db"), ("drill.overdue", "files")]
    assert (
        "has never been drilled; one was due by 2026-03-08 20:48 UTC"
        in (webhook.received[0]["text"])
    )

    # The drill runs (late, on Monday): the alerts resolve. A week on it is due again,
    # and the Sunday run after that (not the one 6 days on) should drill it.
    late = sunday + timedelta(days=1)
    run_restore_tests(fleet, now=late)
    assert open_alerts(fleet) == []
    found = {f.service: f for f in check_drills(fleet, now=late + timedelta(days=12))}
    assert not found["db"].overdue
    assert found["db"].due_by == datetime(2026, 3, 22, 4, 0, tzinfo=UTC) + grace


def test_user_restores_record_their_durations_and_the_api_reports_recovery(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    keys = "k-all:ops@example.com:ops,k-team:t@example.com:t:team-b:read,k-nr:n@x:n:*:backup"
    fleet = fleet_of(
        tmp_path,
        webhook,
        """
[namespaces.team-b.services.notes]
kind = "directory"
path = "{data}/files"
""".replace("{data}", str(tmp_path / "data")),
        backfleet_api_keys=SecretStr(keys),
    )
    stamp = take_backup(fleet)
    run_restore_tests(fleet, namespace="app")
    with session_scope(fleet.settings.database_url) as session:
        restore_id = queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp=stamp,
            services=["db", "files"],
            skipped=[],
            backup_url="file:///x",
        ).id
    assert run_restore(fleet, restore_id=restore_id) == "Success"
    restored = runs(fleet, "db")[-1]
    assert (restored.trigger, restored.status, restored.restore_id) == (
        "restore",
        "Success",
        restore_id,
    )
    assert restored.seconds > 0 and restored.bytes_read > 0 and restored.backup_id is not None

    client = TestClient(create_app(lambda: fleet))
    url = "/athena/api/v1/report/recovery"
    answer = client.get(url, headers={"Authorization": "k-all"})
    assert answer.status_code == 200, answer.text
    rows = {(row["namespace"], row["service"]): row for row in answer.json()}
    assert sorted(rows) == [("app", "db"), ("app", "files"), ("team-b", "notes")]
    db = rows[("app", "db")]
    assert db["lastDrill"]["timestamp"] == stamp and db["lastDrill"]["countsOk"] is True
    assert db["metRto"] is True and db["healthy"] is True and db["rtoSeconds"] == 4 * 3600
    assert db["lastRestore"]["status"] == "Success" and db["lastRestore"]["seconds"] > 0
    assert rows[("team-b", "notes")]["lastDrill"] is None  # not drilled yet, not overdue
    only = client.get(url, params={"namespace": "app"}, headers={"Authorization": "k-all"})
    assert {row["namespace"] for row in only.json()} == {"app"}
    # A key scoped to team-b sees team-b only, and may not ask for app.
    scoped = client.get(url, headers={"Authorization": "Bearer k-team"})
    assert [row["service"] for row in scoped.json()] == ["notes"]
    assert (
        client.get(
            url, params={"namespace": "app"}, headers={"Authorization": "k-team"}
        ).status_code
        == 403
    )
    assert client.get(url, headers={"Authorization": "k-nr"}).status_code == 403  # no `read`
    assert client.get(url).status_code == 401

    m = scrape(fleet, {"backup": 0})
    label = (("namespace", "app"), ("service", "db"))
    assert m[("backfleet_service_last_restore_seconds", label)] == pytest.approx(restored.seconds)
    assert m[("backfleet_service_last_restore_met_rto", label)] == 1


def test_the_migration_matches_the_model(catalog: str, tmp_path: Path) -> None:
    from workers.catalog.migrate import upgrade_catalog

    upgrade_catalog(catalog)
    with get_engine(catalog).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in diff if "recovery_runs" in repr(d)] == []

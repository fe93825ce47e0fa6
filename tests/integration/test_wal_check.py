"""`backfleet check` of a `pitr` service says what its role and server lack, and a role made as
the docs say (LOGIN REPLICATION, no superuser) streams."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from tests.servers import PrivatePostgres
from tests.wal_fleet import WalFleet, make_fleet, receivers_of, wait_for
from workers.catalog.db import dispose_engines
from workers.cli import main
from workers.errors import ConfigError
from workers.pitr.readiness import check_replication
from workers.services_config import ServiceSpec
from workers.transfer.crypto import generate_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PASSWORD = "wal-role-pw-3c1f9a"


def role_url(server: PrivatePostgres, role: str) -> str:
    return server.url_for("postgres").replace("postgres@", f"{role}:{PASSWORD}@", 1)


@pytest.fixture(scope="module")
def roles(wal_postgres: PrivatePostgres) -> Iterator[None]:
    """walplain (no REPLICATION), walnohba (REPLICATION, refused by pg_hba.conf for
    replication), walready (as the docs say)."""
    hba = wal_postgres.directory / "data" / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text("host replication walnohba 127.0.0.1/32 reject\n" + original)
    with psycopg.connect(wal_postgres.admin_url, autocommit=True) as conn:
        for role, extra in (
            ("walplain", ""),
            ("walnohba", " REPLICATION"),
            ("walready", " REPLICATION"),
        ):
            conn.execute(f"DROP ROLE IF EXISTS {role}")  # type: ignore[arg-type]
            conn.execute(f"CREATE ROLE {role} LOGIN{extra} PASSWORD '{PASSWORD}'")  # type: ignore[arg-type]
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        hba.write_text(original)
        with psycopg.connect(wal_postgres.admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")


def spec_for(url: str) -> ServiceSpec:
    return ServiceSpec(name="db", kind="postgres", url=url, pitr=True)


@pytest.mark.timeout(60)
def test_what_a_role_lacks_is_named_with_what_to_do(
    wal_postgres: PrivatePostgres, roles: None
) -> None:
    with pytest.raises(ConfigError) as plain:
        check_replication("app", spec_for(role_url(wal_postgres, "walplain")), [])
    assert "REPLICATION attribute (ALTER ROLE walplain REPLICATION)" in str(plain.value)
    assert PASSWORD not in str(plain.value)
    with pytest.raises(ConfigError) as nohba:
        check_replication("app", spec_for(role_url(wal_postgres, "walnohba")), [])
    assert "pg_hba.conf line for replication connections of walnohba" in str(nohba.value)
    assert "REPLICATION attribute" not in str(nohba.value)
    ready = check_replication("app", spec_for(role_url(wal_postgres, "walready")), [])
    assert "ready to stream WAL" in ready and "wal_level replica" in ready


@pytest.mark.timeout(120)
def test_a_replication_role_streams_and_check_says_so(
    tmp_path: Path,
    redis_server: Any,
    wal_postgres: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
    roles: None,
) -> None:
    secrets = {"AWS_SECRET_KEY": "aws-secret-for-wal-5e2b", "BACKUP_ENCRYPTION_KEY": generate_key()}
    fleet: WalFleet = make_fleet(tmp_path, redis_server, wal_postgres, monkeypatch, secrets)
    services = Path(fleet.env["BACKFLEET_CONFIG"])
    services.write_text(
        services.read_text().replace(wal_postgres.admin_url, role_url(wal_postgres, "walready"))
    )
    try:
        with fleet.streaming():
            wait_for(fleet.slot_exists, timeout=20, what="the slot")
            (receiver,) = wait_for(lambda: receivers_of(fleet.namespace), timeout=10, what="it")
            argv = Path(f"/proc/{receiver}/cmdline").read_bytes()
            environ = Path(f"/proc/{receiver}/environ").read_bytes().split(b"\0")
            assert PASSWORD.encode() not in argv  # on no command line: in its environment
            assert f"PGPASSWORD={PASSWORD}".encode() in environ
            for value in secrets.values():  # the fleet's own secrets: never
                assert value.encode() not in b"".join(environ)
            fleet.write_wal()
            name = fleet.switch()
            wait_for(
                lambda: any(row.segment == name for row in fleet.segments(partial=False)),
                timeout=30,
                what="the segment shipped by a non-superuser",
            )
        done = CliRunner().invoke(main, ["check", "--json"])
        verdicts = {item["name"]: item for item in json.loads(done.output)}
        pitr = verdicts[f"{fleet.namespace}/db pitr"]
        assert pitr["ok"], pitr
        assert PASSWORD not in done.output
    finally:
        fleet.close()
        dispose_engines()


@pytest.mark.timeout(120)
def test_a_receiver_refused_by_pg_hba_is_said_in_the_status_never_with_the_password(
    tmp_path: Path,
    redis_server: Any,
    wal_postgres: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
    roles: None,
) -> None:
    """`backfleet wal` as a process: its receiver is refused (pg_hba.conf rejects the role for
    replication); it says why in `wal status` and its log, tries again, never shows the
    password of the service's URL."""
    fleet: WalFleet = make_fleet(tmp_path, redis_server, wal_postgres, monkeypatch)
    services = Path(fleet.env["BACKFLEET_CONFIG"])
    services.write_text(
        services.read_text().replace(wal_postgres.admin_url, role_url(wal_postgres, "walnohba"))
    )
    try:
        child = fleet.spawn("refused")
        row = wait_for(
            lambda: (r := fleet.stream_row()) and r.error and r,
            timeout=30,
            what="the refusal recorded",
        )
        assert "pg_hba.conf rejects replication connection" in row.error
        assert PASSWORD not in row.error
        assert child.poll() is None  # it goes on trying
        done = CliRunner().invoke(main, ["wal", "status"])
        assert "pg_hba.conf rejects replication" in done.output and PASSWORD not in done.output
        child.terminate()
        assert child.wait(30) == 0
        log = fleet.log_of("refused")
        assert "pg_hba.conf rejects replication" in log and PASSWORD not in log
    finally:
        fleet.close()
        dispose_engines()

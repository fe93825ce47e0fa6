"""How a streamer reaches a `pitr` service's server: its connection (the password kept off
every command line), and what the server says of itself.

pg_receivewal gets the conninfo without the password and libpq's environment with it
(workers.child_env.libpq_env); errors are redacted before they go anywhere.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from workers.child_env import libpq_env
from workers.errors import ConfigError, SourceError
from workers.pitr.lsn import parse_lsn
from workers.redact import redact, strip_connection_strings, url_password_forms
from workers.services_config import ServiceSpec

APPLICATION_NAME = "backfleet_wal"
CONNECT_TIMEOUT = 10


@dataclass(frozen=True)
class ServerFacts:
    system_identifier: str
    timeline: int  # the server's current timeline
    segment_size: int  # wal_segment_size in bytes
    current_lsn: int  # pg_current_wal_lsn()


class Server:
    """One `pitr` service's PostgreSQL server."""

    def __init__(self, spec: ServiceSpec, secrets: Sequence[str] = ()) -> None:
        assert spec.url is not None
        try:
            params: dict[str, Any] = conninfo_to_dict(spec.url)
        except psycopg.Error:  # libpq's message quotes the URL
            raise ConfigError(
                f"the url of service {spec.name} is not a valid PostgreSQL URL"
            ) from None
        if spec.password_env and os.environ.get(spec.password_env):
            params["password"] = os.environ[spec.password_env]
        self._password = str(params.pop("password", "") or "")
        params.setdefault("application_name", APPLICATION_NAME)
        params.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
        self._params = params
        self._env_names = tuple(spec.env or ())
        self.secrets = [s for s in [self._password, *secrets, *url_password_forms(spec.url)] if s]
        self.host = str(params.get("host", "localhost"))

    def conninfo(self, *, application_name: str | None = None) -> str:
        """Everything but the password (pg_receivewal's `-d`, named `application_name` so
        that pg_stat_replication tells its walsender apart)."""
        params = dict(self._params)
        if application_name is not None:
            params["application_name"] = application_name
        return make_conninfo(**params)

    @property
    def password(self) -> str:
        return self._password

    def env(self) -> dict[str, str]:
        """pg_receivewal's environment: libpq's PG* variables, the service's `env` names and
        the password (PGPASSWORD), nothing of the fleet's own."""
        return libpq_env(self._password, names=self._env_names)

    def connect(self) -> psycopg.Connection[Any]:
        """An autocommit connection; SourceError (redacted) if it cannot be had."""
        try:
            return psycopg.connect(
                self.conninfo(), password=self._password or None, autocommit=True
            )
        except psycopg.Error as exc:
            raise SourceError(
                f"cannot connect to PostgreSQL on {self.host}: {self.clean(exc)}"
            ) from None

    def clean(self, error: object) -> str:
        return redact(strip_connection_strings(str(error).strip()), self.secrets)


def server_facts(conn: psycopg.Connection[Any]) -> ServerFacts:
    row = conn.execute(
        "SELECT (SELECT system_identifier FROM pg_control_system())::text,"
        " pg_walfile_name(pg_current_wal_lsn()),"
        " (SELECT bytes_per_wal_segment FROM pg_control_init()),"
        " pg_current_wal_lsn()::text"
    ).fetchone()
    assert row is not None
    system, walfile, size, current = row
    return ServerFacts(
        system_identifier=str(system),
        timeline=int(str(walfile)[:8], 16),
        segment_size=int(size),
        current_lsn=parse_lsn(str(current)),
    )

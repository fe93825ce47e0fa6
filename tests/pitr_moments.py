"""A fleet for the restore-to-a-moment tests: one `pitr` service on a database of its own in
the WAL tests' private cluster (tests/plugins/wal.py, 1 MiB segments), streamed by a
streamer thread, with marker rows whose commit times are known."""

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.health_fleet import take_backup
from tests.servers import PrivatePostgres
from tests.wal_fleet import WalFleet, make_fleet, wait_for
from workers.catalog.db import dispose_engines, session_scope
from workers.fleet import reset_fleet
from workers.pitr.window import Window, load_window

API_KEY = "moment-" + uuid.uuid4().hex
MARKERS = (
    "CREATE TABLE markers (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())"
)


@dataclass
class Moments:
    wal: WalFleet
    database: str
    url: str
    scratch: Path

    @property
    def namespace(self) -> str:
        return self.wal.namespace

    def window(self) -> Window:
        with session_scope(self.wal.catalog) as session:
            return load_window(session, namespace=self.namespace, service="db")

    def write_markers(self, count: int, every: float = 0.2) -> list[tuple[int, datetime]]:
        """`count` markers, each committed on its own, `every` s apart: (id, its time)."""
        marks = []
        start = self.scalar("SELECT coalesce(max(id), 0) FROM markers")
        with psycopg.connect(self.url, autocommit=True) as conn:
            for number in range(start + 1, start + 1 + count):
                row = conn.execute(
                    "INSERT INTO markers (id) VALUES (%s) RETURNING at", (number,)
                ).fetchone()
                assert row is not None
                marks.append((number, row[0]))
                time.sleep(every)
        return marks

    def markers(self) -> list[int]:
        with psycopg.connect(self.url) as conn:
            return [row[0] for row in conn.execute("SELECT id FROM markers ORDER BY id")]

    def scalar(self, query: str) -> Any:
        with psycopg.connect(self.url) as conn:
            row = conn.execute(query).fetchone()  # type: ignore[arg-type]
            return None if row is None else row[0]

    def base_backup(self) -> str:
        """A base backup of the service (the namespace's whole backup); its timestamp."""
        return take_backup(self.wal.fleet(), namespace=self.namespace)

    def wait_shipped(self, moment: datetime, timeout: float = 30) -> Window:
        """Until the window reaches past `moment` (its WAL shipped, the streamer caught up)."""

        def caught_up() -> bool:
            stream = self.wal.stream_row()
            return bool(stream and stream.caught_up_at and stream.caught_up_at > moment)

        return wait_for(
            lambda: (
                caught_up()
                and (found := self.window()).latest is not None
                and found.latest > moment
                and found
            ),
            timeout=timeout,
            what=f"the window reaching {moment}",
        )


def between(marks: list[tuple[int, datetime]], index: int) -> datetime:
    """A moment halfway between marker `index` and the next (100 ms from each)."""
    return marks[index][1] + (marks[index + 1][1] - marks[index][1]) / 2


def present_through(marks: list[tuple[int, datetime]], moment: datetime) -> list[int]:
    return [number for number, at in marks if at <= moment]


@contextmanager
def moments_fleet(
    tmp_path: Path,
    redis_server: Any,
    wal_postgres: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
    extra: dict[str, str] | None = None,
) -> Iterator[Moments]:
    database = f"moment_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(wal_postgres.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    url = f"postgresql://postgres@127.0.0.1:{wal_postgres.port}/{database}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(MARKERS)  # type: ignore[arg-type]
    # Reachable by the `postgres` user the scratch server runs as under root; a short path.
    scratch = Path(tempfile.mkdtemp(prefix="bf-moment-", dir="/tmp"))
    scratch.chmod(0o711)
    settings = {"PITR_SCRATCH_DIR": str(scratch), "BACKFLEET_API_KEYS": API_KEY, **(extra or {})}
    wal = make_fleet(tmp_path, redis_server, wal_postgres, monkeypatch, settings)
    services = Path(wal.env["BACKFLEET_CONFIG"])
    services.write_text(
        f'namespace = "{wal.namespace}"\n[services.db]\nkind = "postgres"\nurl = "{url}"\n'
        "pitr = true\n"
    )
    reset_fleet()
    wal.fleet().store.init()
    try:
        yield Moments(wal, database, url, scratch)
    finally:
        wal.close()
        dispose_engines()
        shutil.rmtree(scratch, ignore_errors=True)
        with psycopg.connect(wal_postgres.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)

"""A fleet with one `pitr` service on the tests' private cluster (tests/plugins/wal.py), for
the WAL streaming tests: its settings in the environment (for `backfleet wal` children too),
a SQLite catalog, a local (or S3) store, helpers to write WAL and to read back what was
shipped."""

import contextlib
import hashlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pyrage
import pytest
import zstandard

from tests.servers import PrivatePostgres
from workers.catalog.db import session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import WalGap, WalSegment, WalStream
from workers.fleet import Fleet, current_fleet, reset_fleet
from workers.pitr.runner import run_streamers
from workers.pitr.slot import slot_name

REPO = Path(__file__).resolve().parents[1]


@dataclass
class WalFleet:
    tmp: Path
    server: PrivatePostgres
    catalog: str
    env: dict[str, str]
    namespace: str = field(default_factory=lambda: f"w{uuid.uuid4().hex[:8]}")
    service: str = "db"
    identity: Any = None
    children: list["subprocess.Popen[bytes]"] = field(default_factory=list)

    @property
    def slot(self) -> str:
        return slot_name(self.namespace, self.service)

    def fleet(self) -> Fleet:
        return current_fleet()

    # --- the server ---
    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        with psycopg.connect(self.server.admin_url, autocommit=True) as conn:
            conn.execute(statement, params)  # type: ignore[arg-type]

    def scalar(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        with psycopg.connect(self.server.admin_url, autocommit=True) as conn:
            row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
            return None if row is None else row[0]

    def write_wal(self, rows: int = 2000) -> None:
        """Some WAL: a table's rows (about 150 bytes of WAL each)."""
        self.execute("CREATE TABLE IF NOT EXISTS walfill (id serial, body text)")
        self.execute(
            "INSERT INTO walfill (body) SELECT md5(g::text) FROM generate_series(1, %s) g", (rows,)
        )

    def switch(self) -> str:
        """Close the current segment (the server moves to the next one); returns its name."""
        self.execute("SELECT 1")  # something to switch away from
        name = self.scalar("SELECT pg_walfile_name(pg_current_wal_lsn())")
        self.execute("CREATE TABLE IF NOT EXISTS walswitch (at timestamptz)")
        self.execute("INSERT INTO walswitch VALUES (now())")
        self.execute("SELECT pg_switch_wal()")
        return str(name)

    def server_segment(self, name: str) -> bytes | None:
        """The server's own copy of a segment (None once it recycled it)."""
        with contextlib.suppress(psycopg.Error):
            data = self.scalar("SELECT pg_read_binary_file(%s)", (f"pg_wal/{name}",))
            return bytes(data)
        return None

    def slot_exists(self) -> bool:
        found = self.scalar(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
        )
        return bool(found)

    def drop_slot(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))

    # --- the catalog and the store ---
    def segments(self, *, partial: bool | None = None) -> list[WalSegment]:
        with session_scope(self.catalog) as session:
            query = session.query(WalSegment).filter_by(
                namespace=self.namespace, service=self.service, kind="segment"
            )
            if partial is not None:
                query = query.filter_by(partial=partial)
            rows = query.order_by(WalSegment.start_lsn, WalSegment.timeline).all()
            session.expunge_all()
            return rows

    def gaps(self) -> list[WalGap]:
        with session_scope(self.catalog) as session:
            rows = session.query(WalGap).filter_by(namespace=self.namespace).all()
            session.expunge_all()
            return rows

    def stream_row(self) -> WalStream | None:
        with session_scope(self.catalog) as session:
            row = session.get(WalStream, (self.namespace, self.service))
            if row is not None:
                session.expunge(row)
            return row

    def stored(self, row: WalSegment) -> bytes:
        """The object's bytes as stored, checked against the row's SHA-256 and size."""
        store = self.fleet().store
        with store.open_read(row.key) as handle:
            data = handle.read()
        assert hashlib.sha256(data).hexdigest() == row.sha256, row.key
        assert len(data) == row.size
        return data

    def plain(self, row: WalSegment) -> bytes:
        """What the object decodes to: the WAL file's own bytes."""
        data = self.stored(row)
        if row.encryption is not None:
            data = pyrage.decrypt(data, [self.identity])
        # Every frame: the pipeline writes one per chunk it compresses (as `zstd -d` reads).
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        return reader.read()

    # --- streamers ---
    @contextlib.contextmanager
    def streaming(self) -> Iterator[threading.Event]:
        """`backfleet wal` as a thread of this process, stopped (as by SIGTERM) at the end."""
        stop = threading.Event()
        thread = threading.Thread(target=run_streamers, args=(self.fleet(), stop), daemon=True)
        thread.start()
        try:
            yield stop
        finally:
            stop.set()
            thread.join(60)
            assert not thread.is_alive(), "the streamers did not stop within 60 s"

    def spawn(self, name: str) -> "subprocess.Popen[bytes]":
        """`backfleet wal` as a process of its own (output in <tmp>/<name>.log)."""
        log = (self.tmp / f"{name}.log").open("ab")
        child = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "wal"],
            env=self.env,
            cwd=self.tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.children.append(child)
        return child

    def log_of(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(30)
        self.drop_slot()
        reset_fleet()


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def wal_env(
    tmp: Path, *, redis_url: str, catalog: str, services_file: Path, extra: dict[str, str]
) -> dict[str, str]:
    """The settings of the test fleet, as the environment of this process and its children."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "AZURE_", "BACKUP_", "WAL_", "OBJECT_STORE", "SECONDARY_"))
    }
    env.update(
        {
            "BROKER_URL": redis_url,
            "DATABASE_URL": catalog,
            "BACKFLEET_CONFIG": str(services_file),
            "OBJECT_STORE_LOCATION_LOCAL": str(tmp / "store"),
            "WAL_SHIP_INTERVAL": "1",
            "WAL_LOCK_TTL": "3",
            "WAL_SPOOL_DIR": str(tmp / "spool"),
            "PYTHONPATH": str(REPO),
            **extra,
        }
    )
    env.pop("REDIS_URL", None)
    env.pop("BACKFLEET_NAMESPACE", None)
    env.pop("BACKFLEET_ENV_FILE", None)  # children run in `tmp`, where no var/fleet.env is
    return env


class Writer:
    """Steady writes on the server from a thread (a row every 20 ms, a segment switch now
    and then), until stopped."""

    def __init__(self, fleet: WalFleet, *, switch_every: float = 1.5) -> None:
        self.fleet, self.switch_every = fleet, switch_every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> "Writer":
        self.fleet.execute("CREATE TABLE IF NOT EXISTS steady (at timestamptz, body text)")
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)

    def _run(self) -> None:
        try:
            with psycopg.connect(self.fleet.server.admin_url, autocommit=True) as conn:
                switched = time.monotonic()
                while not self.stop.wait(0.02):
                    conn.execute("INSERT INTO steady SELECT now(), repeat(md5(random()::text), 8)")
                    if time.monotonic() - switched > self.switch_every:
                        conn.execute("SELECT pg_switch_wal()")
                        switched = time.monotonic()
        except BaseException as exc:  # seen by the test
            self.error = exc


def holder_pid(fleet: WalFleet) -> int | None:
    """The pid in the stream's `holder` (`host pid N`), while one streams."""
    row = fleet.stream_row()
    if row is None or not row.holder:
        return None
    return int(row.holder.rsplit(" ", 1)[1])


def receivers_of(spool_part: str) -> list[int]:
    """Pids of pg_receivewal processes whose command line names `spool_part`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if (
                argv
                and argv[0].endswith(b"pg_receivewal")
                and spool_part.encode() in b" ".join(argv)
            ):
                found.append(int(entry.name))
    return found


def check_no_gap_no_duplicate(fleet: WalFleet, *, through: str, segment_size: int) -> int:
    """Every segment from the first shipped through `through` is in the catalog once, complete,
    contiguous, with one object each in the store (no stray partial), decoding to the
    server's own bytes wherever the server still has the segment; no gap recorded.
    Returns how many segments were compared with the server's."""
    from workers.pitr.lsn import parse_segment_name

    rows = fleet.segments()
    complete = [row for row in rows if not row.partial]
    _, last = parse_segment_name(through, segment_size)
    starts = [row.start_lsn for row in complete if row.start_lsn <= last]
    assert starts, "nothing shipped"
    assert starts == list(range(starts[0], last + segment_size, segment_size)), (
        "a hole or a duplicate"
    )
    assert len({(row.timeline, row.segment) for row in rows}) == len(rows)
    assert not fleet.gaps(), [gap.reason for gap in fleet.gaps()]
    keys = sorted(info.key for info in fleet.fleet().store.list(f"{fleet.namespace}/wal/"))
    assert keys == sorted(row.key for row in rows), "objects and rows differ"
    compared = 0
    for row in complete:
        if row.start_lsn > last:
            continue
        server = fleet.server_segment(row.segment)
        if server is not None:
            assert fleet.plain(row) == server, row.segment
            compared += 1
    return compared


def s3_env(s3_server: Any, bucket: str) -> dict[str, str]:
    """The settings of a fleet on the tests' S3 server (tests/plugins/object_stores.py)."""
    return {
        "OBJECT_STORE_LOCATION_TYPE": "s3",
        "AWS_S3_BUCKET_NAME": bucket,
        "AWS_S3_ENDPOINT_URL": s3_server.endpoint,
        "AWS_S3_REGION": "us-west-2",
        "AWS_S3_ADDRESSING_STYLE": "path",
        "AWS_ACCESS_KEY": s3_server.access_key,
        "AWS_SECRET_KEY": s3_server.secret_key,
    }


def make_fleet(
    tmp_path: Path,
    redis_server: Any,
    wal_postgres: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
    extra: dict[str, str] | None = None,
) -> WalFleet:
    catalog = f"sqlite:///{tmp_path}/catalog.db"
    upgrade_catalog(catalog)
    services = tmp_path / "backfleet.toml"
    env = wal_env(
        tmp_path,
        redis_url=redis_server.url,
        catalog=catalog,
        services_file=services,
        extra=extra or {},
    )
    fleet = WalFleet(tmp_path, wal_postgres, catalog, env)
    services.write_text(
        f'namespace = "{fleet.namespace}"\n'
        f"[services.{fleet.service}]\n"
        'kind = "postgres"\n'
        f'url = "{wal_postgres.admin_url}"\n'
        "pitr = true\n"
    )
    for name in list(os.environ):
        if name not in env:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_fleet()
    return fleet

"""A scratch PostgreSQL: a private folder, a server started on a data folder in it, and
both gone when the context ends, whatever ends it (success, an error, a timeout, SIGTERM).

    with ScratchPostgres(root=settings.pitr_scratch_dir, timeout=...) as scratch:
        unpack_base_backup(stream, scratch.data)     # then stream.verify(): nothing starts
        server = scratch.start(users=["postgres"])   # on unverified bytes
        ... server.conninfo("app") ...

The folder (`backfleet-pitr-*` under PITR_SCRATCH_DIR, default the system temp dir)
holds `data/` (the cluster), `wal/` (WAL segments a restore to a moment serves through
restore_command), `socket/` (the only way in: no TCP port is opened) and the server's
own configuration and log. A worker running as root runs the server as the `postgres`
user (PostgreSQL refuses root), which then owns the folder.

The server recovers the base backup as an archive recovery (recovery.signal) that stops
at its consistent point (`recovery_target = 'immediate'`), at `Recovery.target_time`, or
at the end of the WAL there is (`Recovery.end_of_wal`), replaying WAL from pg_wal/ and
from `wal/` (`restore_command`), then promotes. It does
not accept connections before that (hot_standby = off), so a connection that answers
and says it is not in recovery means the data is ready. The whole recovery is bounded
by `timeout`; the server's configuration is ours, none of the backed-up cluster's
(postgresql.auto.conf is emptied: its settings, extensions' preloads included, were the
source server's).

Stopping is immediate (SIGQUIT, then SIGKILL): the data is thrown away. The server gets
SIGKILL from the kernel if the worker dies first, and a folder whose worker died is
removed by the next scratch made under the same root (pitr/leftovers.py).
"""

import logging
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

import psycopg
from psycopg.conninfo import make_conninfo

from workers.child_env import child_env
from workers.errors import ConfigError, SourceError
from workers.pitr.leftovers import sweep, write_owner
from workers.pitr.server_process import (
    account as os_account,
)
from workers.pitr.server_process import (
    die_with_parent,
    hand_over,
    signal_group,
    user_kwargs,
)
from workers.pitr.unpack import major_version
from workers.sources.pg_server import ServerPrograms, server_programs

log = logging.getLogger(__name__)

PREFIX = "backfleet-pitr-"
DEFAULT_ROOT_NAME = "backfleet-pitr"
PORT = 5432  # only names the socket file: no TCP port is opened
SOCKET_PATH_MAX = 107  # a Unix socket's path, in bytes, on Linux
POLL_SECONDS = 0.2
CONNECT_TIMEOUT = 5
STOP_GRACE = 10.0
LOG_TAIL_LINES = 15
RUN_AS_ROOT_USER = "postgres"


class ScratchStopped(SourceError):
    """The worker was told to stop (SIGTERM) while a scratch server ran."""


@dataclass(frozen=True)
class Recovery:
    """Where recovery stops: the consistent point (no `target_time`), that moment, or
    (`end_of_wal`) the end of every WAL file there is."""

    target_time: datetime | None = None
    inclusive: bool = True  # a commit exactly at target_time is kept
    end_of_wal: bool = False


@dataclass(frozen=True)
class ScratchServer:
    """A running scratch server: reached through its socket folder, no password."""

    socket_dir: Path
    user: str  # a role of the cluster that connected
    programs: ServerPrograms

    def conninfo(self, dbname: str, user: str | None = None) -> str:
        return make_conninfo(
            host=str(self.socket_dir), port=PORT, user=user or self.user, dbname=dbname
        )

    def connect(
        self, dbname: str = "template1", user: str | None = None
    ) -> "psycopg.Connection[Any]":
        return psycopg.connect(self.conninfo(dbname, user), connect_timeout=CONNECT_TIMEOUT)


def scratch_root(configured: Path | None) -> Path:
    """PITR_SCRATCH_DIR, else `backfleet-pitr` in the system temp dir (made searchable by
    the server's user, which must reach the folder inside)."""
    root = configured or Path(tempfile.gettempdir()) / DEFAULT_ROOT_NAME
    root.mkdir(mode=0o711, parents=True, exist_ok=True)
    return root


def run_as_user() -> str | None:
    """The OS user the server runs as: `postgres` when the worker is root, else the worker's."""
    return RUN_AS_ROOT_USER if os.geteuid() == 0 else None


class ScratchPostgres:
    """The private folder and, once `start` is called, its server (see the module doc)."""

    def __init__(self, *, root: Path | None, timeout: float, user: str | None = None) -> None:
        self.root = scratch_root(root)
        self.timeout = timeout
        self.user = user if user is not None else run_as_user()
        self.folder = Path()
        self.process: subprocess.Popen[bytes] | None = None
        self._previous_handler: Any = None
        self._terminated = False
        self._cleaning = False

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def wal_dir(self) -> Path:
        return self.folder / "wal"

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    @property
    def log_file(self) -> Path:
        return self.folder / "postgres.log"

    # --- the folder ---
    def __enter__(self) -> Self:
        account = os_account(self.user)
        self._check_root(account)
        sweep(self.root, PREFIX)
        self.folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=self.root))
        self._catch_sigterm()
        try:
            write_owner(self.folder)
            socket = self.socket_dir / f".s.PGSQL.{PORT}"
            if len(os.fsencode(socket)) > SOCKET_PATH_MAX:
                raise ConfigError(
                    f"PITR_SCRATCH_DIR {self.root} is too long: the scratch server's socket "
                    f"path would be {len(os.fsencode(socket))} bytes, over {SOCKET_PATH_MAX}"
                )
            for folder in (self.data, self.wal_dir, self.socket_dir):
                folder.mkdir(mode=0o700)
            if account is not None:
                for path in (self.folder, self.data, self.wal_dir, self.socket_dir):
                    os.chown(path, account.pw_uid, account.pw_gid)
        except BaseException:
            self._clean_up()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._clean_up()

    def _clean_up(self) -> None:
        self._cleaning = True  # a SIGTERM now is noted, not raised: the cleanup goes on
        try:
            self.stop()
        finally:
            if self.folder != Path():
                shutil.rmtree(self.folder, ignore_errors=True)
            self._restore_sigterm()

    def _check_root(self, account: pwd.struct_passwd | None) -> None:
        if not self.root.is_dir():
            raise ConfigError(f"PITR_SCRATCH_DIR {self.root} is not a folder")
        if account is None:
            return
        # Every folder above the scratch must be searchable by the server's user.
        for folder in [self.root, *self.root.resolve().parents]:
            info = folder.stat()
            if not (info.st_mode & 0o001 or info.st_uid == account.pw_uid):
                raise ConfigError(
                    f"the scratch PostgreSQL runs as {account.pw_name}, which cannot reach "
                    f"PITR_SCRATCH_DIR {self.root}: {folder} is not searchable by others "
                    "(chmod o+x), or choose another PITR_SCRATCH_DIR"
                )

    # --- SIGTERM: stop and remove first, then let the signal do what it would have done ---
    def _catch_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers; leftovers.py covers the rest
        self._previous_handler = signal.getsignal(signal.SIGTERM)
        if self._previous_handler == signal.SIG_IGN:
            self._previous_handler = None
            return
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, number: int, frame: FrameType | None) -> None:
        self._terminated = True
        if self._cleaning:
            return
        raise ScratchStopped("the worker was told to stop (SIGTERM): the scratch server stops")

    def _restore_sigterm(self) -> None:
        if self._previous_handler is None:
            return
        signal.signal(signal.SIGTERM, self._previous_handler)
        self._previous_handler = None
        if self._terminated:  # now handled as it would have been without the scratch
            os.kill(os.getpid(), signal.SIGTERM)

    # --- the server ---
    def start(self, *, users: Sequence[str], recovery: Recovery | None = None) -> ScratchServer:
        """Start the server on `data` and wait until its recovery ended; `users`: roles
        of the cluster to connect as, tried in turn (trust through the private socket)."""
        if self.process is not None:
            raise SourceError("the scratch server is already running")
        programs = server_programs(major_version(self.data))
        self._configure(recovery or Recovery())
        account = os_account(self.user)
        if account is not None:
            hand_over(self.folder, account)
        argv = [str(programs.postgres), "-D", str(self.data)]
        argv += ["-c", f"config_file={self.folder / 'postgresql.conf'}"]
        with self.log_file.open("ab") as log_out:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_out,
                stderr=subprocess.STDOUT,
                env=child_env(),
                start_new_session=True,  # a stop reaches every process of it
                preexec_fn=die_with_parent(),
                **user_kwargs(account),
            )
        user = self._wait(users)
        return ScratchServer(self.socket_dir, user, programs)

    def _configure(self, recovery: Recovery) -> None:
        (self.data / "standby.signal").unlink(missing_ok=True)
        (self.data / "recovery.signal").write_bytes(b"")
        # The source server's ALTER SYSTEM settings are not this server's.
        (self.data / "postgresql.auto.conf").write_bytes(b"")
        wal = shlex.quote(str(self.wal_dir))
        settings: dict[str, str] = {
            "hba_file": str(self.folder / "pg_hba.conf"),
            "ident_file": str(self.folder / "pg_ident.conf"),
            "listen_addresses": "",
            "port": str(PORT),
            "unix_socket_directories": str(self.socket_dir),
            "unix_socket_permissions": "0700",
            "lc_messages": "C",  # connection errors are read below
            "hot_standby": "off",  # no connection before the recovery ended
            "archive_mode": "off",
            "fsync": "off",  # thrown away afterwards: no need to outlive a crash
            "synchronous_commit": "off",
            "max_connections": "20",
            "shared_buffers": "32MB",  # one dump reads it once: the worker's memory matters more
            "restore_command": f"test -f {wal}/%f && cp {wal}/%f %p",
            "recovery_target_action": "promote",
            "recovery_target_inclusive": "on" if recovery.inclusive else "off",
            "recovery_target_timeline": "latest",
        }
        if recovery.end_of_wal:
            pass  # no target: every WAL file there is replayed, then the server promotes
        elif recovery.target_time is None:
            settings["recovery_target"] = "immediate"
        else:
            moment = recovery.target_time.astimezone(UTC)
            settings["recovery_target_time"] = moment.strftime("%Y-%m-%d %H:%M:%S.%f+00")
        lines = [
            f"{name} = '{value.replace(chr(39), chr(39) * 2)}'" for name, value in settings.items()
        ]
        (self.folder / "postgresql.conf").write_text("\n".join(lines) + "\n")
        (self.folder / "pg_hba.conf").write_text("local all all trust\n")
        (self.folder / "pg_ident.conf").write_text("")

    def _wait(self, users: Sequence[str]) -> str:
        deadline = time.monotonic() + self.timeout
        candidates = [user for user in dict.fromkeys(users) if user]
        missing: set[str] = set()
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SourceError(
                    "the scratch PostgreSQL stopped before its recovery ended "
                    f"(exit {self.process.returncode}): {self.log_tail()}"
                )
            for user in candidates:
                if user in missing:
                    continue
                state = _recovered(self.socket_dir, user)
                if state == "ready":
                    return user
                if state == "no such role":
                    missing.add(user)
            if candidates and missing >= set(candidates):
                raise SourceError(
                    "the scratch PostgreSQL has none of the roles "
                    f"{', '.join(candidates)} to connect as"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise SourceError(
                    f"the scratch PostgreSQL did not finish its recovery within "
                    f"{self.timeout:g} s (PITR_SCRATCH_TIMEOUT): {self.log_tail()}"
                )
            time.sleep(min(POLL_SECONDS, left))

    def log_says(self, text: str) -> bool:
        """The server's log (lc_messages C) holds `text`."""
        return text in self.log_text()

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-LOG_TAIL_LINES:]) or "(empty log)"

    def stop(self) -> None:
        """Immediate shutdown (SIGQUIT), then SIGKILL to what is left; always reaped."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            signal_group(process.pid, signal.SIGQUIT)
            try:
                process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                log.warning("the scratch PostgreSQL did not stop on SIGQUIT: killing it")
        signal_group(process.pid, signal.SIGKILL)  # any backend the postmaster left
        process.wait()


def _recovered(socket_dir: Path, user: str) -> str:
    """`ready` (connected, recovery over), `waiting`, or `no such role`."""
    info = make_conninfo(host=str(socket_dir), port=PORT, user=user, dbname="template1")
    try:
        with psycopg.connect(info, connect_timeout=CONNECT_TIMEOUT) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            return "waiting" if row is None or row[0] else "ready"
    except psycopg.Error as exc:
        if f'role "{user}" does not exist' in str(exc):
            return "no such role"
        return "waiting"  # starting up, or still in recovery

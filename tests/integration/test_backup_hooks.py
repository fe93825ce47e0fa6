"""A service's `pre` and `post` hooks through the real backup path: tasks.backup.run_backup
(eagerly, on a real Redis), the catalog, an encrypted local store. The hooks are small `sh`
scripts that leave markers and dump their environment, as an Incus snapshot would be made
(pre) and deleted (post) around the dump."""

import io
import json
import logging
import os
import signal
import sqlite3
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyrage
import pytest
import zstandard
from billiard.exceptions import SoftTimeLimitExceeded
from pyrage import x25519

from api.schemas import BackupDetail
from tasks.backup import run_backup
from tests.secret_scan import given_secrets
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import (
    FAILED,
    RUNNING,
    SUCCESS,
    Alert,
    Artifact,
    Backup,
    HookRun,
    UserEvent,
)
from workers.fleet import current_fleet, reset_fleet
from workers.operations.dry_run import dry_run
from workers.operations.locks import forget_clients
from workers.transfer.crypto import generate_key

pytestmark = pytest.mark.integration

HOOK_PASSWORD = "hook-pw-5d1e0c7a"
AWS_SECRET = "aws-secret-for-hooks-3f9b21"
API_KEY = "hooks-api-key-7c2e"
BASE = {"PATH", "HOME", "LANG", "TZ", "PWD", "SHLVL", "_"}  # PWD etc.: sh itself may add


@dataclass
class Fleet:
    tmp: Path
    data: Path
    store: Path
    catalog: str
    identity: Any

    def configure(self, hooks: str, *, path: Path | None = None) -> None:
        """The `files` directory service with these lines as its [services.files.hooks]."""
        (self.tmp / "backfleet.toml").write_text(
            'namespace = "app"\n'
            "[services.files]\n"
            'kind = "directory"\n'
            f'path = "{path or self.data}"\n'
            'password_env = "FILES_HOOK_PW"\n'
            'env = ["HOOK_SETTING"]\n'
            "[services.files.hooks]\n" + hooks + "\n"
        )
        reset_fleet()

    def back_up(self, timestamp: str | None = None) -> dict[str, Any]:
        kwargs = {"namespace": "app", **({"timestamp": timestamp} if timestamp else {})}
        run_backup.apply(kwargs=kwargs)
        with session_scope(self.catalog) as session:
            backup = session.query(Backup).order_by(Backup.id.desc()).first()
            assert backup is not None
            return BackupDetail.of(backup, url="-").model_dump()

    def stored_files(self, timestamp: str) -> dict[str, bytes]:
        """The files in the service's stored (encrypted, compressed) tar, by name."""
        (path,) = (self.store / "app" / timestamp).glob("files.*")
        plain = pyrage.decrypt(path.read_bytes(), [self.identity])
        tar = zstandard.ZstdDecompressor().decompressobj().decompress(plain)
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            return {
                os.path.normpath(member.name): archive.extractfile(member).read()  # type: ignore[union-attr]
                for member in archive.getmembers()
                if member.isfile()
            }

    def events(self) -> list[UserEvent]:
        with session_scope(self.catalog) as session:
            rows = session.query(UserEvent).filter_by(namespace="app").order_by(UserEvent.id)
            session.expunge_all()
            return [row for row in rows if row.name_hints == ["BackupHook"]]


@pytest.fixture
def fleet(tmp_path: Path, redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    data = tmp_path / "files"
    data.mkdir()
    (data / "a.txt").write_text("hello\n")
    url = f"sqlite:///{tmp_path}/catalog.db"
    upgrade_catalog(url)
    key = generate_key()
    for name, value in {
        "BROKER_URL": redis_server.url,
        "DATABASE_URL": url,
        "BACKFLEET_CONFIG": str(tmp_path / "backfleet.toml"),
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp_path / "store"),
        "BACKUP_ENCRYPTION_KEY": key,  # the worker's secrets: no hook may see them
        "AWS_SECRET_KEY": AWS_SECRET,
        "BACKFLEET_API_KEYS": API_KEY,
        "ENABLE_USER_EVENTS": "true",
        "FILES_HOOK_PW": HOOK_PASSWORD,  # the service's own password: its hooks get it
        "HOOK_SETTING": "shown-to-the-hooks",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("REDIS_URL", "BACKFLEET_NAMESPACE", "BACKUP_HOOK_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    forget_clients()
    yield Fleet(tmp_path, data, tmp_path / "store", url, x25519.Identity.from_str(key))
    reset_fleet()
    dispose_engines()


def sh(script: str) -> str:
    """`["sh", "-c", script]` in TOML (a JSON string is a TOML string)."""
    return json.dumps(["sh", "-c", script])


def test_pre_runs_before_the_dump_and_post_after_it_with_only_the_services_variables(
    fleet: Fleet,
) -> None:
    snapshot, env_dump = fleet.data / "snapshot.txt", fleet.tmp / "pre.env"
    fleet.configure(
        f"pre = {sh(f'echo made-by-pre > {snapshot}; env > {env_dump}; echo snapshot made')}\n"
        f"post = {sh(f'rm {snapshot}; echo snapshot deleted')}"
    )
    backup = fleet.back_up()

    assert backup["status"] == SUCCESS, backup["error"]
    assert backup["warning"] is None
    stored = fleet.stored_files(backup["timestamp"])
    assert stored["snapshot.txt"] == b"made-by-pre\n"  # pre ran before the dump
    assert not snapshot.exists()  # post ran after it
    pre, post = backup["hooks"]
    assert (pre["hook"], pre["status"], pre["detail"], pre["output"]) == (
        "pre",
        SUCCESS,
        "exit 0",
        "snapshot made",
    )
    assert (post["hook"], post["status"], post["output"]) == ("post", SUCCESS, "snapshot deleted")
    with session_scope(fleet.catalog) as session:
        (artifact,) = session.query(Artifact).all()
        assert pre["finished_at"] <= artifact.started_at
        assert artifact.finished_at is not None and artifact.finished_at <= post["started_at"]

    seen = dict(line.split("=", 1) for line in env_dump.read_text().splitlines() if "=" in line)
    assert set(seen) <= BASE | {"HOOK_SETTING", "FILES_HOOK_PW"}, sorted(seen)
    assert (seen["HOOK_SETTING"], seen["FILES_HOOK_PW"]) == ("shown-to-the-hooks", HOOK_PASSWORD)
    others = {what: v for what, v in given_secrets(dict(os.environ)).items() if v != HOOK_PASSWORD}
    assert {"BACKUP_ENCRYPTION_KEY", "AWS_SECRET_KEY"} <= set(others)
    assert [what for what, value in others.items() if value in env_dump.read_text()] == []

    events = fleet.events()  # one audit event per hook run
    assert [(e.request_params["hook"], e.response_code) for e in events] == [
        ("pre", 200),
        ("post", 200),
    ]


def test_post_runs_after_a_failed_dump(fleet: Fleet) -> None:
    marker = fleet.tmp / "post.ran"
    fleet.configure(f"pre = {sh('true')}\npost = {sh(f'touch {marker}')}", path=fleet.tmp / "gone")
    backup = fleet.back_up()

    assert backup["status"] == FAILED and backup["error"].startswith("files: ")
    assert marker.exists()
    assert [(h["hook"], h["status"]) for h in backup["hooks"]] == [
        ("pre", SUCCESS),
        ("post", SUCCESS),
    ]


def test_a_failing_pre_fails_the_backup_with_its_redacted_message_and_post_still_runs(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workers.operations.hooks")
    marker = fleet.tmp / "post.ran"
    said = (
        'echo "incus: cannot snapshot c1, password=hunter2-hook was refused" >&2; '
        f'echo "pw $FILES_HOOK_PW, key {AWS_SECRET}"; exit 4'
    )
    fleet.configure(f"pre = {sh(said)}\npost = {sh(f'touch {marker}')}")
    backup = fleet.back_up()

    assert backup["status"] == FAILED
    error = backup["error"]
    assert error.startswith("files: pre hook sh failed (exit 4): ")
    assert "cannot snapshot c1, password=*** was refused" in error and "pw ***, key ***" in error
    assert backup["artifacts"] == []  # nothing was dumped
    assert not (fleet.store / "app" / backup["timestamp"]).exists()
    assert marker.exists()

    pre = backup["hooks"][0]
    assert (pre["hook"], pre["status"], pre["detail"]) == ("pre", FAILED, "exit 4")
    logged = [r.getMessage() for r in caplog.records if r.name == "workers.operations.hooks"]
    assert any("pre hook sh ended (exit 4)" in line and "pw ***" in line for line in logged)
    recorded = [
        backup["error"],
        pre["output"],
        *(e.request_payload for e in fleet.events()),
        *logged,
    ]
    for text in recorded:
        for secret in ("hunter2-hook", HOOK_PASSWORD, AWS_SECRET):
            assert secret not in text, text
    assert [e.response_code for e in fleet.events()] == [500, 200]


def test_a_failed_post_keeps_the_backup_and_warns(fleet: Fleet) -> None:
    fleet.configure(f"post = {sh('echo could not restart c1 >&2; exit 2')}")
    backup = fleet.back_up()

    assert backup["status"] == SUCCESS and backup["error"] is None
    assert backup["warning"] == "files: post hook sh failed (exit 2): could not restart c1"
    assert fleet.stored_files(backup["timestamp"])["a.txt"] == b"hello\n"
    with session_scope(fleet.catalog) as session:
        (alert,) = session.query(Alert).filter_by(event="backup.hook_failed").all()
        assert (alert.service, alert.timestamp) == ("files", backup["timestamp"])
        assert "could not restart c1" in alert.text


def test_a_pre_past_its_time_limit_is_stopped_with_its_children_and_fails_the_backup(
    fleet: Fleet,
) -> None:
    child = fleet.tmp / "child.pid"
    fleet.configure(f'pre = {sh(f"sleep 300 & echo $! > {child}; wait")}\ntimeout = "1s"')
    backup = fleet.back_up()

    assert backup["status"] == FAILED
    assert backup["error"].startswith("files: pre hook sh failed (timed out after 1 s, stopped)")
    assert not _running(int(child.read_text()))


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for whoever adopted it to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_redelivered_backup_does_not_rerun_the_hooks_of_a_service_already_stored(
    fleet: Fleet,
) -> None:
    runs = fleet.tmp / "runs"
    fleet.configure(f"pre = {sh(f'echo pre >> {runs}')}\npost = {sh(f'echo post >> {runs}')}")
    first = fleet.back_up()
    assert first["status"] == SUCCESS
    with session_scope(fleet.catalog) as session:  # as if the worker died before the manifest
        row = queries.get_backup(session, namespace="app", timestamp=first["timestamp"])
        assert row is not None
        row.status, row.finished_at = RUNNING, None
    again = fleet.back_up(first["timestamp"])
    assert again["status"] == SUCCESS
    assert runs.read_text().split() == ["pre", "post"]


def test_a_redelivered_backup_runs_the_post_hook_its_lost_worker_did_not_finish(
    fleet: Fleet,
) -> None:
    runs = fleet.tmp / "runs"
    fleet.configure(f"pre = {sh(f'echo pre >> {runs}')}\npost = {sh(f'echo post >> {runs}')}")
    first = fleet.back_up()
    assert first["status"] == SUCCESS
    # As if the worker was killed while `post` ran: the artifact is stored, `pre` is
    # recorded, `post` is not (its row is written when it ends).
    with session_scope(fleet.catalog) as session:
        row = queries.get_backup(session, namespace="app", timestamp=first["timestamp"])
        assert row is not None
        row.status, row.finished_at = RUNNING, None
        session.query(HookRun).filter_by(backup_id=row.id, hook="post").delete()
    again = fleet.back_up(first["timestamp"])

    assert again["status"] == SUCCESS
    assert runs.read_text().split() == ["pre", "post", "post"]  # `post` only, once more
    assert [h["hook"] for h in again["hooks"]] == ["pre", "post"]
    assert fleet.stored_files(first["timestamp"])["a.txt"] == b"hello\n"


def test_a_missing_hook_program_is_one_clear_sentence(fleet: Fleet) -> None:
    fleet.configure('pre = ["backfleet-no-such-incus", "snapshot", "create", "c1"]')
    backup = fleet.back_up()
    assert backup["status"] == FAILED
    assert backup["error"] == (
        "files: pre hook backfleet-no-such-incus could not start: "
        "backfleet-no-such-incus is not on the worker's PATH"
    )


@pytest.fixture
def soft_time_limit() -> Iterator[None]:
    """SIGUSR1 raises SoftTimeLimitExceeded in the main thread, as in a Celery pool process
    (billiard's soft_timeout_sighandler); SIGALRM too, for a timer."""

    def raise_it(signum: int, frame: Any) -> None:
        raise SoftTimeLimitExceeded()

    before = {sig: signal.signal(sig, raise_it) for sig in (signal.SIGUSR1, signal.SIGALRM)}
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    for sig, handler in before.items():
        signal.signal(sig, handler)


def test_the_soft_time_limit_lets_post_finish_records_it_and_only_then_stops_the_backup(
    fleet: Fleet, soft_time_limit: None
) -> None:
    """The soft limit fires 1 s into `post` (the hook signals the worker as billiard
    would): `post` runs on to its end, is recorded and warned of, and then the backup
    stops. Before, it was killed mid-run, unrecorded."""
    marker = fleet.tmp / "put-back"
    post = f"kill -USR1 $PPID; sleep 1; echo done > {marker}; echo c1 did not start; exit 3"
    fleet.configure(f"pre = {sh('echo snapshot made')}\npost = {sh(post)}")
    backup = fleet.back_up()

    assert marker.read_text() == "done\n"  # `post` ran to its end
    assert backup["status"] == FAILED
    assert backup["error"] == "files: stopped by BACKUP_SOFT_TIME_LIMIT (36000 s)"
    assert [h["hook"] for h in backup["hooks"]] == ["pre", "post"]
    post_run = backup["hooks"][1]
    assert (post_run["hook"], post_run["status"], post_run["detail"], post_run["output"]) == (
        "post",
        FAILED,
        "exit 3",
        "c1 did not start",
    )
    assert backup["warning"] == "files: post hook sh failed (exit 3): c1 did not start"
    with session_scope(fleet.catalog) as session:
        (alert,) = session.query(Alert).filter_by(event="backup.hook_failed").all()
        assert "c1 did not start" in alert.text


@pytest.mark.slow
def test_post_after_the_soft_time_limit_gets_only_the_time_left_before_the_hard_one(
    fleet: Fleet, soft_time_limit: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The soft limit (5 s) stops `pre`; `post` then has its own 5 s timeout, but the
    hard kill comes 10 s after the start: it is stopped before it (less a margin), with
    what it started, and recorded as such; its 5 s would have outlived the worker."""
    monkeypatch.setenv("BACKUP_SOFT_TIME_LIMIT", "5")
    monkeypatch.setenv("BACKUP_TIME_LIMIT", "10")
    child = fleet.tmp / "child.pid"
    post = f"sleep 300 & echo $! > {child}; wait"
    fleet.configure(f'pre = {sh("sleep 300")}\npost = {sh(post)}\ntimeout = "5s"')
    signal.setitimer(signal.ITIMER_REAL, 5)  # the soft time limit, 5 s from the start
    backup = fleet.back_up()

    assert backup["status"] == FAILED
    assert backup["error"] == "files: stopped by BACKUP_SOFT_TIME_LIMIT (5 s)"
    (post_run,) = backup["hooks"]  # `pre` was stopped by the soft limit, unrecorded
    assert post_run["hook"] == "post" and post_run["status"] == FAILED
    assert post_run["detail"].endswith(": the backup's BACKUP_TIME_LIMIT was near")
    assert not _running(int(child.read_text()))


def test_the_soft_time_limit_while_a_hook_run_is_recorded_still_stops_the_backup(
    fleet: Fleet, soft_time_limit: None
) -> None:
    """`pre` leaves a process holding the catalog's write lock for 3 s, which signals the
    worker 1 s in (the soft limit) while `pre`'s run waits to be recorded: the backup
    stops. Before, recording a hook caught every Exception, this one too, and the
    backup went on to Success past its soft limit."""
    ready, marker = fleet.tmp / "locked", fleet.tmp / "post.ran"
    hold = (
        "import os, signal, sqlite3, time\n"
        f"db = sqlite3.connect({str(fleet.tmp / 'catalog.db')!r}, isolation_level=None)\n"
        'db.execute("BEGIN EXCLUSIVE")\n'
        f"open({str(ready)!r}, 'w').close()\n"
        f"time.sleep(1); os.kill({os.getpid()}, signal.SIGUSR1); time.sleep(2)\n"
        'db.execute("ROLLBACK")\n'
    )
    (fleet.tmp / "hold.py").write_text(hold)
    pre = (
        f"{sys.executable} {fleet.tmp / 'hold.py'} > /dev/null 2>&1 & "
        f"while [ ! -e {ready} ]; do sleep 0.05; done"
    )
    fleet.configure(f"pre = {sh(pre)}\npost = {sh(f'touch {marker}')}")
    backup = fleet.back_up()

    assert backup["status"] == FAILED
    assert backup["error"] == "files: stopped by BACKUP_SOFT_TIME_LIMIT (36000 s)"
    assert backup["artifacts"] == []  # nothing was dumped past the soft limit
    assert marker.exists()  # `post` still put things back


def test_a_dry_run_lists_the_hooks_without_running_them(fleet: Fleet) -> None:
    marker = fleet.tmp / "ran"
    fleet.configure(
        f"pre = {sh(f'touch {marker}')}\n"
        f'post = ["incus", "snapshot", "delete", "c1", "--password", "{HOOK_PASSWORD}"]'
    )
    (result,) = dry_run(current_fleet(), namespace="app", only_config=False)
    assert result.hooks == (
        f"pre: sh -c 'touch {marker}'",
        "post: incus snapshot delete c1 --password ***",
    )
    assert not marker.exists()
    with sqlite3.connect(fleet.tmp / "catalog.db") as db:
        assert db.execute("SELECT count(*) FROM hook_runs").fetchone() == (0,)

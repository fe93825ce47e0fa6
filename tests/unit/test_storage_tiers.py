"""Storage tiers that follow retention, the parts a unit test shows: STORAGE_CLASSES
refused where the store cannot follow it, what keeps each backup as data, the wait for
archived objects (its backoff, progress, limit), a restore's row while it waits, the
metadata check of an archived artifact, and `backfleet retention`'s moves and --force.
The real servers show the rest (tests/integration/test_tiers_follow_retention.py)."""

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import workers.operations.restore
from tests.health_fleet import make_fleet, take_backup
from tests.tiered_memory import TieredMemoryStore
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import SUCCESS, Restore
from workers.catalog.tiers import StoredArtifact
from workers.cli import main
from workers.errors import ConfigError, IntegrityError, PermanentError
from workers.fleet import Fleet, build_fleet, check_storage_classes
from workers.operations import gfs, service_series, tiers, upkeep
from workers.operations.restore import run_restore
from workers.operations.retention import apply_retention
from workers.operations.verify import verify_backup
from workers.repository.manifest import ArtifactEntry, Manifest, manifest_key
from workers.repository.stored import check_by_metadata
from workers.settings import STORAGE_RULES, Settings, load_settings
from workers.stores import make_store
from workers.transfer.rehydration import RehydrationTimeout, RehydrationWait, wait_until_readable

MOMENTS = [datetime(2024, 12, 20, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC)]
PASS = datetime(2026, 1, 11, 2, 30, tzinfo=UTC)
COUNTS = {
    "retention_keep_hourly": 0,
    "retention_keep_daily": 1,
    "retention_keep_weekly": 0,
    "retention_keep_monthly": 0,
    "retention_keep_yearly": 3,
}


@pytest.fixture(autouse=True)
def _engines(redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BROKER_URL", redis_server.url)  # retention takes a lock in Redis
    monkeypatch.delenv("LOCK_REDIS_URL", raising=False)
    yield
    dispose_engines()


# --- STORAGE_CLASSES: refused where the store cannot follow it ---------------------------


def test_the_rules_are_gfs_periods_in_order() -> None:
    assert STORAGE_RULES == tiers.RULES


def test_a_malformed_storage_classes_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_CLASSES", "quarterly=GLACIER")
    with pytest.raises(ConfigError, match="invalid setting STORAGE_CLASSES: 'quarterly=GLACIER'"):
        load_settings()


def test_the_local_store_refuses_storage_classes_when_the_fleet_is_built(tmp_path: Path) -> None:
    services = tmp_path / "backfleet.toml"
    services.write_text('namespace = "app"\n[services.files]\nkind = "directory"\npath = "/srv"\n')
    settings = Settings(
        backfleet_config=services,
        object_store_location_local=tmp_path / "store",
        storage_classes="monthly=STANDARD_IA,yearly=DEEP_ARCHIVE",
    )
    with pytest.raises(ConfigError) as refused:
        build_fleet(settings)
    assert str(refused.value) == (
        "invalid setting STORAGE_CLASSES: the local store has a single storage class: "
        "leave it empty"
    )
    build_fleet(settings.model_copy(update={"storage_classes": ""}))


@pytest.mark.parametrize(
    ("store", "mapping", "problem"),
    [
        ("s3", "monthly=Cool", "monthly=Cool: the s3 store's classes are STANDARD, STANDARD_IA"),
        ("s3", "monthly=GLACIER,yearly=DEEP_ARCHIVE", "GLACIER is an archive class"),
        ("s3", "monthly=DEEP_ARCHIVE,yearly=STANDARD_IA", "colder rule names a warmer class"),
        ("azure-blob-storage", "monthly=STANDARD_IA", "Hot, Cool, Cold, Archive"),
        ("azure-blob-storage", "monthly=Archive,yearly=Archive", None),
        ("s3", "weekly=STANDARD_IA,monthly=GLACIER_IR,yearly=DEEP_ARCHIVE", None),
        ("azure-blob-storage", "monthly=Cool,yearly=Archive", None),
    ],
)
def test_storage_classes_are_checked_against_the_stores(
    store: str, mapping: str, problem: str | None
) -> None:
    settings = Settings(object_store_location_type=store, storage_classes=mapping)
    if problem is None:
        check_storage_classes(settings, make_store(settings))  # no request is made
        return
    with pytest.raises(ConfigError, match=f"invalid setting STORAGE_CLASSES: .*{problem}"):
        check_storage_classes(settings, make_store(settings))


# --- what keeps each backup, as data -----------------------------------------------------


def test_the_selection_says_which_rules_keep_each_backup_across_services() -> None:
    stamps = ["2024-06-01t00-00-00", "2024-06-02t00-00-00", "2025-12-01t00-00-00"]
    candidates = [
        service_series.Candidate(stamps[0], ("db", "files")),
        service_series.Candidate(stamps[1], ("db",), verified_good=True),
        service_series.Candidate(stamps[2], ("db", "files")),
    ]
    policies = service_series.ServicePolicies(
        {
            "db": gfs.Policy(hourly=0, daily=1, weekly=0, monthly=0, yearly=5),
            "files": gfs.Policy(hourly=0, daily=0, weekly=0, monthly=2, yearly=0),
        },
        gfs.Policy(),
    )
    selection = service_series.select(candidates, policies)
    assert selection.keeping == {
        stamps[0]: {"yearly", "monthly"},  # `oldest yearly` is its rule: yearly
        stamps[1]: {"yearly", "verified"},
        stamps[2]: {"newest", "daily", "yearly", "monthly"},
    }
    # The reasons people read are as they were.
    assert selection.keep[stamps[0]] == ["db: oldest yearly", "files: monthly"]
    assert selection.keep[stamps[1]] == ["db: yearly", "newest verified-good backup of service db"]


# --- waiting for archived objects ----------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def archived_store(keys: list[str], polls: int) -> TieredMemoryStore:
    store = TieredMemoryStore(polls=polls)
    for key in keys:
        store.put_object(key, key.encode())
        store.set_storage_class(key, "DEEP_ARCHIVE")
    return store


def test_the_wait_asks_once_for_each_then_polls_with_a_backoff() -> None:
    keys = ["app/t/db.sqlite.zst", "app/t/files.tar.zst"]
    store, time = archived_store(keys, polls=4), FakeTime()
    store.put_object("app/t/manifest.json", b"{}")  # not archived: not asked for
    said: list[str | None] = []
    wait = RehydrationWait(3600, "1h at most", sleep=time.sleep, clock=time.clock)
    back = wait_until_readable(store, [*keys, "app/t/manifest.json"], wait, said.append)
    assert back == {}  # S3: the class stays (a temporary copy reads); nothing to record
    assert time.slept == [30, 60, 120, 240]
    assert store.asked == dict.fromkeys(keys, 5)
    assert said[0] == (
        "waiting for 2 of 2 archived objects to be rehydrated from DEEP_ARCHIVE "
        "(Standard; asked 0s ago, gives up after 1h)"
    )
    assert said[-2].startswith("waiting for 2 of 2") and "asked 3m ago" in said[-2]
    assert said[-1] is None  # the row's message is cleared


def test_the_wait_gives_up_at_its_limit_with_a_clear_message() -> None:
    store, time = archived_store(["app/t/db.sqlite.zst"], polls=1000), FakeTime()
    said: list[str | None] = []
    bound = "a restore waits at most REHYDRATION_TIMEOUT (1000s)"
    wait = RehydrationWait(1000, bound, sleep=time.sleep, clock=time.clock)
    with pytest.raises(RehydrationTimeout) as timed_out:
        wait_until_readable(store, ["app/t/db.sqlite.zst"], wait, said.append)
    assert str(timed_out.value) == (
        "1 of 1 archived objects (DEEP_ARCHIVE) were not rehydrated after 16m: a restore waits "
        "at most REHYDRATION_TIMEOUT (1000s). The store goes on bringing them back: ask again "
        "once it is done (first: app/t/db.sqlite.zst)"
    )
    assert time.now == 1000 and said[-1] is None


def test_the_wait_is_bounded_by_the_tasks_soft_time_limit() -> None:
    assert RehydrationWait.from_settings(Settings()).timeout == 0.9 * 36000  # 9 h, not 48 h
    bound = RehydrationWait.from_settings(Settings()).bound
    assert bound.startswith(
        "a restore waits at most nine tenths of BACKUP_SOFT_TIME_LIMIT (10h), which stops it "
        "before REHYDRATION_TIMEOUT (48h): raise it"
    )
    longer = Settings(
        backup_soft_time_limit=60 * 3600,
        backup_time_limit=61 * 3600,
        celery_visibility_timeout=62 * 3600,
        rehydration_timeout="48h",
        rehydration_tier="Bulk",
    )
    wait = RehydrationWait.from_settings(longer)
    assert (wait.timeout, wait.tier) == (48 * 3600, "Bulk")
    assert wait.bound == "a restore waits at most REHYDRATION_TIMEOUT (48h)"


def test_a_store_without_archive_classes_is_asked_nothing(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path)
    wait = RehydrationWait(1, "x", sleep=lambda s: pytest.fail("no wait"))
    assert wait_until_readable(fleet.store, ["app/t/missing"], wait) == {}


# --- a restore's row while it waits; verification by metadata -----------------------------


def tiered_fleet(tmp_path: Path, polls: int = 0, **overrides: Any) -> Fleet:
    store = TieredMemoryStore(polls=polls)
    return make_fleet(
        tmp_path,
        store=store,
        storage_classes="monthly=STANDARD_IA,yearly=DEEP_ARCHIVE",
        **{**COUNTS, **overrides},
    )


def test_a_restore_shows_its_wait_on_its_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = tiered_fleet(tmp_path, polls=2)
    old, _ = (take_backup(fleet, moment=m) for m in MOMENTS)
    (plan,) = apply_retention(fleet, namespace="app", now=PASS)
    assert plan.moves[old].storage_class == "DEEP_ARCHIVE"
    with session_scope(fleet.settings.database_url) as session:
        restore_id = queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp=old,
            services=["db", "files"],
            skipped=[],
            backup_url="x",
        ).id
    seen: list[str | None] = []

    def sleep(seconds: float) -> None:
        time.now += seconds
        with session_scope(fleet.settings.database_url) as session:
            row = session.get(Restore, restore_id)
            assert row is not None
            seen.append(row.message)

    time = FakeTime()
    wait = RehydrationWait(600, "10m at most", sleep=sleep, clock=time.clock)
    monkeypatch.setattr(
        workers.operations.restore.RehydrationWait, "from_settings", lambda settings: wait
    )
    assert run_restore(fleet, restore_id=restore_id) == SUCCESS
    assert seen == [
        "waiting for 2 of 2 archived objects to be rehydrated from DEEP_ARCHIVE "
        "(Standard; asked 0s ago, gives up after 10m)",
        "waiting for 2 of 2 archived objects to be rehydrated from DEEP_ARCHIVE "
        "(Standard; asked 30s ago, gives up after 10m)",
    ]
    with session_scope(fleet.settings.database_url) as session:
        row = session.get(Restore, restore_id)
        assert row is not None and row.message is None


def test_an_archived_artifact_is_judged_by_metadata_and_a_difference_fails_it(
    tmp_path: Path,
) -> None:
    fleet = tiered_fleet(tmp_path)
    old, _ = (take_backup(fleet, moment=m) for m in MOMENTS)
    apply_retention(fleet, namespace="app", now=PASS)
    store = fleet.store
    assert isinstance(store, TieredMemoryStore)
    store.reads.clear()
    (result,) = verify_backup(fleet, namespace="app", timestamp=old)
    assert (result.status, result.by_metadata, result.bytes_read, result.kind) == (
        SUCCESS,
        2,
        0,
        "metadata",
    )
    assert store.reads == [manifest_key("app", old)]  # the manifest only: it stays hot

    with store.open_read(manifest_key("app", old)) as handle:
        entry = Manifest.from_bytes(handle.read()).artifacts[0]
    assert check_by_metadata(store, entry) == (
        f"{entry.key} in DEEP_ARCHIVE: size, recorded SHA-256 checked"
    )
    store.sha256s[entry.key] = hashlib.sha256(b"another").hexdigest()
    with pytest.raises(IntegrityError, match="rewritten after it was stored"):
        check_by_metadata(store, entry)
    shorter = ArtifactEntry.model_validate({**entry.model_dump(), "size": entry.size + 1})
    with pytest.raises(IntegrityError, match="the store holds"):
        check_by_metadata(store, shorter)
    (failed,) = verify_backup(fleet, namespace="app", timestamp=old)
    assert failed.status == "Failed" and "rewritten" in (failed.error or "")
    assert store.reads.count(entry.key) == 0  # still never read


def test_an_archived_artifact_with_no_sha256_anywhere_does_not_pass_on_its_size(
    tmp_path: Path,
) -> None:
    """Review finding 10: same-length other bytes with no SHA-256 in the metadata passed."""
    fleet = tiered_fleet(tmp_path)
    old, _ = (take_backup(fleet, moment=m) for m in MOMENTS)
    apply_retention(fleet, namespace="app", now=PASS)
    store = fleet.store
    assert isinstance(store, TieredMemoryStore)
    with store.open_read(manifest_key("app", old)) as handle:
        entry = Manifest.from_bytes(handle.read()).artifacts[0]
    del store.sha256s[entry.key]  # written before SHA-256s were recorded, or stripped
    with pytest.raises(IntegrityError, match="keeps no SHA-256"):
        check_by_metadata(store, entry)
    (result,) = verify_backup(fleet, namespace="app", timestamp=old)
    assert result.status == "Failed" and "cannot be verified without reading" in (
        result.error or ""
    )
    assert store.reads.count(entry.key) == 0


# --- the command line ----------------------------------------------------------------------


def test_the_cli_shows_moves_and_force_deletes_within_the_minimum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = tiered_fleet(tmp_path)
    old, new = (take_backup(fleet, moment=m) for m in MOMENTS)
    monkeypatch.setattr("workers.fleet.current_fleet", lambda: fleet)
    runner = CliRunner()
    dry = runner.invoke(main, ["retention", "--namespace", "app", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert (
        f"would move app/{old} to DEEP_ARCHIVE (2 objects): kept by yearly: its warmest rule "
        "is yearly (yearly=DEEP_ARCHIVE in STORAGE_CLASSES)"
    ) in dry.output
    assert "app: 2 kept, 0 would delete, 1 to move colder" in dry.output
    done = runner.invoke(main, ["retention", "--namespace", "app"])
    assert f"moved app/{old} to DEEP_ARCHIVE (2 objects)" in done.output, done.output

    # Now a policy that keeps only the newest: the archived backup is within its 180 days.
    tight = replace(fleet, settings=fleet.settings.model_copy(update={"retention_keep_yearly": 1}))
    monkeypatch.setattr("workers.fleet.current_fleet", lambda: tight)
    held = runner.invoke(main, ["retention", "--namespace", "app", "--explain"])
    assert f"keep app/{old}: in DEEP_ARCHIVE since " in held.output, held.output
    assert "180-day minimum ends" in held.output and f"deleted app/{old}" not in held.output
    forced = runner.invoke(main, ["retention", "--namespace", "app", "--force"])
    assert f"deleted app/{old}: not kept by retention" in forced.output, forced.output
    assert "forced before its billed minimum (in DEEP_ARCHIVE since " in forced.output
    assert new not in forced.output.split("deleted", 1)[1]


def test_a_restore_test_rehydrates_what_it_tests(tmp_path: Path) -> None:
    from workers.operations.restore_test import run_restore_test

    fleet = tiered_fleet(tmp_path)
    old, _ = (take_backup(fleet, moment=m) for m in MOMENTS)
    apply_retention(fleet, namespace="app", now=PASS)
    result = run_restore_test(fleet, namespace="app", timestamp=old)
    assert (result.status, sorted(result.tested)) == (SUCCESS, ["db", "files"]), result.error
    store = fleet.store
    assert isinstance(store, TieredMemoryStore) and len(store.asked) == 2


def test_restore_wait_shows_what_the_restore_waits_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.cli.progress as progress

    fleet = make_fleet(tmp_path)
    url = fleet.settings.database_url
    with session_scope(url) as session:
        row = queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp="2024-12-20t00-00-00",
            services=["db"],
            skipped=[],
            backup_url="x",
        )
        row.status, row.task_id = "Running", "task-1"
        row.message = "waiting for 1 of 1 archived objects to be rehydrated from DEEP_ARCHIVE"
        restore_id = row.id
    drawn: list[str] = []

    class Bar:
        def __init__(self, quiet: bool = False) -> None:
            self.quiet = quiet

        def __enter__(self) -> "Bar":
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def add_task(self, description: str, total: int | None) -> int:
            return 0

        def update(self, task: int, **fields: Any) -> None:
            drawn.append(fields["description"])

    def waiter(task_id: str, seconds: float) -> bool:
        with session_scope(url) as session:
            done = session.get(Restore, restore_id)
            assert done is not None
            done.status, done.message = SUCCESS, None
        return True

    monkeypatch.setattr(progress, "_bar", Bar)
    assert progress.wait_for_restore(url, restore_id, waiter=waiter) == (SUCCESS, None)
    assert drawn[0] == (
        "restore 2024-12-20t00-00-00 Running: waiting for 1 of 1 archived objects to be "
        "rehydrated from DEEP_ARCHIVE"
    )
    assert drawn[-1] == "restore 2024-12-20t00-00-00 Success"


def test_the_copy_sweep_asks_for_an_archived_backup_and_copies_it_once_it_reads(
    tmp_path: Path,
) -> None:
    from workers.operations.replicate import copy_pending
    from workers.stores.memory import MemoryStore

    fleet = replace(tiered_fleet(tmp_path, polls=1), secondary=MemoryStore())
    old, _ = (take_backup(fleet, moment=m) for m in MOMENTS)
    with session_scope(fleet.settings.database_url) as session:  # as if never copied
        backup = queries.get_backup(session, namespace="app", timestamp=old)
        assert backup is not None
        backup.copied_at = None
    apply_retention(fleet, namespace="app", now=PASS)
    first = copy_pending(fleet)
    assert (
        f"app/{old}" in first.failed
        and "a later sweep copies the backup" in first.failed[f"app/{old}"]
    )
    second = copy_pending(fleet)  # the rehydration is done: it reads
    assert f"app/{old}" in second.copied, second.failed


def test_a_failed_move_is_reported_and_tried_again_at_the_next_pass(tmp_path: Path) -> None:
    fleet = tiered_fleet(tmp_path)
    old, _ = (take_backup(fleet, moment=m) for m in MOMENTS)
    store = fleet.store
    assert isinstance(store, TieredMemoryStore)
    refuse = store.set_storage_class
    done: list[str] = []

    def flaky(key: str, storage_class: str) -> None:
        if key.endswith("files.tar.zst") and not done:
            done.append(key)
            raise PermanentError("AccessDenied (check the credentials)")
        refuse(key, storage_class)

    store.set_storage_class = flaky  # type: ignore[method-assign]
    (plan,) = apply_retention(fleet, namespace="app", now=PASS)
    assert plan.moves == {}  # the plan says what was done
    assert plan.upkeep_failed[old] == "its move: AccessDenied (check the credentials)"
    with session_scope(fleet.settings.database_url) as session:  # what moved is recorded
        backup = queries.get_backup(session, namespace="app", timestamp=old)
        assert backup is not None
        recorded = {a.key.rsplit("/", 1)[1]: a.storage_class for a in backup.artifacts}
    assert recorded == {"db.sqlite.zst": "DEEP_ARCHIVE", "files.tar.zst": "STANDARD"}
    (again,) = apply_retention(fleet, namespace="app", now=PASS)
    assert list(again.moves[old].keys) == [f"app/{old}/files.tar.zst"]  # only what is left


def test_a_move_colder_waits_for_the_current_class_s_billed_minimum() -> None:
    """Second review, finding 11: moving out of STANDARD_IA 10 days in was billed as 30."""
    store = TieredMemoryStore()
    mapping = {"weekly": "STANDARD_IA", "yearly": "DEEP_ARCHIVE"}
    stamp = "2025-01-01t00-00-00"
    moved_in = datetime(2025, 12, 1, tzinfo=UTC)
    stored = {stamp: [StoredArtifact("app/x/db.sqlite.zst", "STANDARD_IA", moved_in)]}
    kept = {stamp: ["yearly"]}
    early = upkeep.plan_moves(store, mapping, kept, stored, now=moved_in + timedelta(days=10))
    assert early == {}
    later = upkeep.plan_moves(store, mapping, kept, stored, now=moved_in + timedelta(days=31))
    assert later[stamp].storage_class == "DEEP_ARCHIVE"
    assert later[stamp].keys == ("app/x/db.sqlite.zst",)


def test_a_restore_waits_for_its_archived_objects_before_it_locks_the_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Second review, finding 7: the wait (up to REHYDRATION_TIMEOUT, hours) held the
    target namespace's lock, so no backup of it could run meanwhile."""
    import tasks.restore
    from workers.operations.locks import lock_holder

    fleet = tiered_fleet(tmp_path, polls=2)
    old, _ = (take_backup(fleet, moment=m) for m in MOMENTS)
    apply_retention(fleet, namespace="app", now=PASS)
    with session_scope(fleet.settings.database_url) as session:
        restore_id = queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp=old,
            services=["db", "files"],
            skipped=[],
            backup_url="x",
        ).id
    holders: list[str | None] = []

    def sleep(seconds: float) -> None:
        time.now += seconds
        holders.append(lock_holder(fleet.settings, "app"))

    time = FakeTime()
    wait = RehydrationWait(600, "10m at most", sleep=sleep, clock=time.clock)
    monkeypatch.setattr(
        workers.operations.restore.RehydrationWait, "from_settings", lambda settings: wait
    )
    monkeypatch.setattr(tasks.restore, "current_fleet", lambda: fleet)
    assert tasks.restore.run_restore(restore_id)["status"] == SUCCESS
    assert holders == [None, None]  # it waited twice, the namespace free both times


def test_moves_colder_hold_no_retention_lock_and_skip_a_backup_read_since_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Second review, finding 7: a pass moving a large archive colder held the retention
    lock for hours, and every restore of the namespace waited for it. Now only each
    backup's own moving mark is held, and a reader that came after the plan wins."""
    from workers.operations import locks, upkeep
    from workers.operations.retention import primary

    fleet = tiered_fleet(tmp_path)
    old, _ = (take_backup(fleet, moment=m) for m in MOMENTS)
    seen: list[tuple[str | None, str | None]] = []
    real_move = upkeep.move

    def watching_move(*args: Any, **kwargs: Any) -> None:
        seen.append(
            (
                locks.lock_holder(fleet.settings, "app", prefix=locks.RETENTION_PREFIX),
                locks.lock_holder(fleet.settings, f"app/{old}", prefix=locks.MOVING_PREFIX),
            )
        )
        reader = locks.being_read(fleet.settings, "app", old, wait=0)
        with pytest.raises(locks.NamespaceBusy, match="moving"), reader:
            pass  # a reader arriving now waits for the move
        real_move(*args, **kwargs)

    monkeypatch.setattr(upkeep, "move", watching_move)
    (plan,) = apply_retention(fleet, namespace="app", now=PASS)
    assert plan.moves[old].storage_class == "DEEP_ARCHIVE"
    assert seen == [(None, "moving")]

    # A reader that registers after the plan was made: the backup is not moved under it.
    fleet2 = tiered_fleet(tmp_path / "second")
    first, _ = (take_backup(fleet2, moment=m) for m in MOMENTS)
    real_plan = primary.plan_retention

    def plan_then_a_reader_comes(*args: Any, **kwargs: Any) -> Any:
        made = real_plan(*args, **kwargs)
        mark = locks.reading_mark(fleet2.settings, "app", first)
        mark.acquire()
        marks.append(mark)
        return made

    marks: list[locks.NamespaceLock] = []
    monkeypatch.setattr(primary, "plan_retention", plan_then_a_reader_comes)
    (late,) = apply_retention(fleet2, namespace="app", now=PASS)
    marks[0].release()
    assert first not in late.moves and not late.upkeep_failed
    store = fleet2.store
    assert isinstance(store, TieredMemoryStore)
    with store.open_read(manifest_key("app", first)) as handle:
        keys = [entry.key for entry in Manifest.from_bytes(handle.read()).artifacts]
    assert {store.storage_class_of(key) for key in keys} == {"STANDARD"}

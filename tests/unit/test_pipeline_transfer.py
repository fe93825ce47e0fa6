"""Parallel parts, growing part sizes, retries, resume and encryption, on the in-memory store."""

import hashlib
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes import BytesSource, entry_of
from workers.errors import ConfigError, IntegrityError, PermanentError, TransientError
from workers.repository.manifest import ArtifactEntry
from workers.retry import RetryPolicy, call_with_retries
from workers.settings import Settings
from workers.stores.base import UploadedPart
from workers.stores.memory import MemoryStore
from workers.transfer import crypto
from workers.transfer import upload as upload_module
from workers.transfer.bandwidth import BandwidthLimiter
from workers.transfer.budget import PartBudget
from workers.transfer.download import restore_artifact
from workers.transfer.parts import TransferOptions, TransferStopped, part_size_for
from workers.transfer.upload import ResumePoint, StoredArtifact, upload_artifact

KEY = "app/2023-02-02t17-03-15/blob.bin.zst"
MiB = 1024 * 1024
FAST = RetryPolicy(attempts=4, base_delay=0, max_delay=0)


def options(**extra: Any) -> TransferOptions:
    return TransferOptions(part_size=MiB, concurrency=4, retry=FAST, **extra)


def entry_for(stored: StoredArtifact) -> ArtifactEntry:
    return entry_of(stored, service="blob", fmt="bin")


def restored(store: MemoryStore, stored: StoredArtifact, keyring: Any = None) -> bytes | None:
    target = BytesSource(b"")
    restore_artifact(store=store, entry=entry_for(stored), source=target, keyring=keyring)
    return target.restored


class FlakyStore(MemoryStore):
    """Fails chosen part uploads a number of times, with a given error."""

    def __init__(self, failures: dict[int, int], error: Callable[[], Exception]) -> None:
        super().__init__()
        self.failures, self.error = dict(failures), error
        self.attempts: dict[int, int] = {}
        self.concurrent, self.peak = 0, 0
        self.lock = threading.Lock()

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        with self.lock:
            self.attempts[number] = self.attempts.get(number, 0) + 1
            self.concurrent += 1
            self.peak = max(self.peak, self.concurrent)
            fail = self.failures.get(number, 0) > 0
            if fail:
                self.failures[number] -= 1
        try:
            threading.Event().wait(0.01)  # long enough for parts to overlap
            if fail:
                raise self.error()
            return super().upload_part(key, upload_id, number, data)
        finally:
            with self.lock:
                self.concurrent -= 1


def random_data(size: int) -> bytes:
    return os.urandom(size // 2) + b"id,name,amount\n" * (size // 30)


def test_parts_go_in_parallel_and_come_back_in_order() -> None:
    store = FlakyStore({}, TransientError)
    data = random_data(12 * MiB)
    stored = upload_artifact(
        store=store, key=KEY, open_dump=BytesSource(data).dump, options=options()
    )
    assert store.peak > 1
    assert stored.sha256 == hashlib.sha256(store.objects[KEY]).hexdigest()
    assert restored(store, stored) == data


class SlowCopyStore(MemoryStore):
    """Holds each part's buffer for a while before copying it, as a slow upload does."""

    def __init__(self) -> None:
        super().__init__()
        self.buffers: set[int] = set()
        self.concurrent, self.peak = 0, 0
        self.lock = threading.Lock()

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> UploadedPart:
        with self.lock:
            self.buffers.add(id(data))
            self.concurrent += 1
            self.peak = max(self.peak, self.concurrent)
        threading.Event().wait(0.02)  # a reused buffer would be overwritten meanwhile
        with self.lock:
            self.concurrent -= 1
        return super().upload_part(key, upload_id, number, data)


def test_part_buffers_are_reused_only_once_their_upload_is_over() -> None:
    store = SlowCopyStore()
    data = os.urandom(20 * MiB)  # incompressible: about 20 parts of 1 MiB
    stored = upload_artifact(
        store=store, key=KEY, open_dump=BytesSource(data).dump, options=options()
    )
    assert len(store.uploads) == 0 and len(store.objects[KEY]) > 20 * MiB
    # The parts in flight and the one being filled: no more buffers than that, reused.
    assert len(store.buffers) <= options().concurrency + 1 < 20
    assert stored.sha256 == hashlib.sha256(store.objects[KEY]).hexdigest()
    assert restored(store, stored) == data


def test_part_sizes_grow_to_fit_the_part_limit() -> None:
    store = MemoryStore()  # 10,000 parts, like S3
    sizes = [part_size_for(n, 8 * MiB, store) for n in (1, 1000, 1001, 2001, 9999, 10000)]
    assert sizes == [8 * MiB, 8 * MiB, 16 * MiB, 32 * MiB, 4096 * MiB, 4096 * MiB]
    capacity = sum(part_size_for(n, 8 * MiB, store) for n in range(1, 10_001))
    assert capacity > 7 * 1024**4  # several TiB still fit


def test_transient_part_failures_are_retried() -> None:
    store = FlakyStore({1: 2, 3: 3}, lambda: TransientError("503 SlowDown"))
    data = random_data(6 * MiB)
    stored = upload_artifact(
        store=store, key=KEY, open_dump=BytesSource(data).dump, options=options()
    )
    assert store.attempts[1] == 3 and store.attempts[3] == 4
    assert restored(store, stored) == data


def test_a_permanent_failure_is_not_retried_and_nothing_is_left() -> None:
    store = FlakyStore({2: 1}, lambda: PermanentError("403 AccessDenied"))
    with pytest.raises(PermanentError):
        upload_artifact(
            store=store,
            key=KEY,
            open_dump=BytesSource(random_data(6 * MiB)).dump,
            options=options(),
        )
    assert store.attempts[2] == 1
    assert store.uploads == {} and store.objects == {}


def test_too_many_transient_failures_give_up_and_abort() -> None:
    store = FlakyStore({1: 10}, lambda: TransientError("reset"))
    with pytest.raises(TransientError, match="failed 4 times"):
        upload_artifact(
            store=store,
            key=KEY,
            open_dump=BytesSource(random_data(2 * MiB)).dump,
            options=options(),
        )
    assert store.uploads == {}


def crash_midway(
    store: MemoryStore, data: bytes, monkeypatch: pytest.MonkeyPatch, parts_before_crash: int
) -> tuple[str, list[UploadedPart]]:
    """Upload until `parts_before_crash` parts are in, then die without aborting."""
    recorded: list[UploadedPart] = []
    upload_ids: list[str] = []

    def on_part(part: UploadedPart) -> None:
        recorded.append(part)
        if len(recorded) >= parts_before_crash:
            raise KeyboardInterrupt  # stands in for SIGKILL: nothing after this runs

    monkeypatch.setattr(upload_module, "_abort", lambda *args: None)
    with pytest.raises(KeyboardInterrupt):
        upload_artifact(
            store=store,
            key=KEY,
            open_dump=BytesSource(data).dump,
            options=TransferOptions(part_size=MiB, concurrency=1, retry=FAST),
            on_upload=upload_ids.append,
            on_part=on_part,
        )
    monkeypatch.undo()
    return upload_ids[0], sorted(recorded, key=lambda p: p.number)


def test_a_dead_upload_is_resumed_from_its_recorded_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    data = random_data(8 * MiB)
    upload_id, parts = crash_midway(store, data, monkeypatch, parts_before_crash=3)
    resume = ResumePoint(upload_id=upload_id, part_size=MiB, parts=parts)
    stored = upload_artifact(
        store=store, key=KEY, open_dump=BytesSource(data).dump, options=options(), resume=resume
    )
    assert stored.resumed_parts == 3
    assert restored(store, stored) == data


def test_a_resume_whose_bytes_differ_starts_again(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    upload_id, parts = crash_midway(store, random_data(8 * MiB), monkeypatch, 3)
    changed = random_data(8 * MiB)  # the source changed while the worker was dead
    resume = ResumePoint(upload_id=upload_id, part_size=MiB, parts=parts)
    stored = upload_artifact(
        store=store, key=KEY, open_dump=BytesSource(changed).dump, options=options(), resume=resume
    )
    assert stored.resumed_parts == 0
    assert restored(store, stored) == changed
    assert store.uploads == {}  # the old upload was aborted


def test_encryption_round_trip_rotation_and_tampering() -> None:
    old_key, new_key = crypto.generate_key(), crypto.generate_key()
    old_ring = crypto.Keyring.from_settings(Settings(backup_encryption_key=old_key))
    store = MemoryStore()
    data = random_data(3 * MiB)
    stored = upload_artifact(
        store=store,
        key=KEY,
        open_dump=BytesSource(data).dump,
        options=options(identity=old_ring.current),
    )
    assert stored.encryption == {"scheme": "age-x25519", "key_id": crypto.key_id(old_ring.current)}
    assert b"id,name,amount" not in store.objects[KEY]

    rotated = crypto.Keyring.from_settings(
        Settings(backup_encryption_key=new_key, backup_encryption_old_keys=f"{old_key}")
    )
    assert restored(store, stored, rotated) == data
    only_new = crypto.Keyring.from_settings(Settings(backup_encryption_key=new_key))
    with pytest.raises(ConfigError, match="BACKUP_ENCRYPTION_OLD_KEYS"):
        restored(store, stored, only_new)

    tampered = bytearray(store.objects[KEY])
    tampered[len(tampered) // 2] ^= 1
    store.objects[KEY] = bytes(tampered)
    target = BytesSource(b"")
    with pytest.raises(IntegrityError):
        restore_artifact(store=store, entry=entry_for(stored), source=target, keyring=rotated)
    assert target.restored is None


def test_keys_are_checked_and_never_echoed() -> None:
    with pytest.raises(ConfigError, match="BACKUP_ENCRYPTION_KEY") as caught:
        crypto.Keyring.from_settings(Settings(backup_encryption_key="AGE-SECRET-KEY-1NOTAKEY"))
    assert "NOTAKEY" not in str(caught.value)


def test_bandwidth_limiter_holds_the_average_rate() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = BandwidthLimiter(10 * MiB, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        limiter.consume(5 * MiB)
    assert now[0] == pytest.approx(4.5)  # 50 MiB at 10 MiB/s: the last slot starts at 4.5 s


def test_retry_backoff_is_bounded_and_jittered() -> None:
    policy = RetryPolicy(attempts=6, base_delay=0.5, max_delay=4)
    assert [policy.delay(n, rng=lambda: 1.0) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]
    assert policy.delay(3, rng=lambda: 0.25) == 0.5
    slept: list[float] = []
    calls = [0]

    def flaky() -> str:
        calls[0] += 1
        if calls[0] < 3:
            raise TransientError("timeout")
        return "ok"

    assert (
        call_with_retries(flaky, policy=policy, what="x", sleep=slept.append, rng=lambda: 1.0)
        == "ok"
    )
    assert slept == [0.5, 1.0]


def test_a_stop_check_aborts_the_upload_and_leaves_nothing() -> None:
    store = FlakyStore({}, TransientError)
    asked: list[int] = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 3  # three parts go, then the backup says stop

    with pytest.raises(TransferStopped):
        upload_artifact(
            store=store,
            key=KEY,
            open_dump=BytesSource(os.urandom(8 * MiB)).dump,
            options=options(),
            should_stop=should_stop,
        )
    assert store.uploads == {} and KEY not in store.objects


def test_artifacts_uploading_at_once_share_one_budget_of_parts() -> None:
    store = SlowCopyStore()
    budget = PartBudget(3)
    datas = [os.urandom(12 * MiB), os.urandom(12 * MiB)]
    stored: dict[int, StoredArtifact] = {}

    def upload(index: int) -> None:
        stored[index] = upload_artifact(
            store=store,
            key=f"{KEY}.{index}",
            open_dump=BytesSource(datas[index]).dump,
            options=options(),
            budget=budget,
        )

    threads = [threading.Thread(target=upload, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert store.peak <= 3  # not 4 each, as options() alone would allow
    # The parts in flight, the one each fills, and one more once an artifact's last
    # (shorter) part has taken a buffer out of the pool.
    assert len(store.buffers) <= 3 + 2 + 1
    for index in (0, 1):
        assert restored(store, stored[index]) == datas[index]

"""CommandSource with small shell tools, through the real pipeline and the in-memory store."""

import os
import time
from pathlib import Path

import psutil
import pytest

from tests.fakes import stored_entry
from workers.errors import IntegrityError, SourceError
from workers.repository.manifest import ArtifactEntry, artifact_key
from workers.services_config import parse_fleet_config
from workers.settings import Settings
from workers.sources import make_source
from workers.sources.command import CommandSource
from workers.sources.process import STDERR_TAIL_BYTES
from workers.stores.memory import MemoryStore
from workers.transfer.download import restore_artifact

SECRET_ENV = "BF_TEST_COMMAND_SECRET"
SECRET = "hunter2-very-secret"


def backup(store: MemoryStore, source: CommandSource) -> ArtifactEntry:
    return stored_entry(
        store,
        source,
        key=artifact_key("app", "2024-01-02t03-04-05", "tool", source.format, "zstd"),
        service="tool",
    )


def copy_to(target: Path) -> list[str]:
    """A restore command that writes its stdin to `target`."""
    return ["sh", "-c", 'cat > "$0"', str(target)]


def staged_files(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if "backfleet" in name)


def test_round_trip_streams_the_tool_output_back_into_the_restore_tool(tmp_path: Path) -> None:
    data = os.urandom(3 * 2**20 + 17)
    (tmp_path / "dump.bin").write_bytes(data)
    work = tmp_path / "work"
    work.mkdir()
    source = CommandSource(
        ["cat", str(tmp_path / "dump.bin")],
        copy_to(tmp_path / "restored.bin"),
        format="sql",
        work_dir=work,
    )
    store = MemoryStore()

    entry = backup(store, source)
    restore_artifact(store=store, entry=entry, source=source)

    assert (tmp_path / "restored.bin").read_bytes() == data
    assert entry.key.endswith("/tool.sql.zst") and entry.format == "sql"
    assert entry.source == {"kind": "command", "command": "cat"}
    assert entry.source_size == len(data)
    assert staged_files(work) == []  # the staged copy is gone


def test_an_empty_dump_round_trips(tmp_path: Path) -> None:
    source = CommandSource(["true"], copy_to(tmp_path / "out"))
    store = MemoryStore()
    restore_artifact(store=store, entry=backup(store, source), source=source)
    assert (tmp_path / "out").read_bytes() == b""


def test_a_non_zero_exit_fails_with_the_tools_message(tmp_path: Path) -> None:
    source = CommandSource(
        ["sh", "-c", "printf partial; echo 'Unknown database nope' >&2; exit 3"],
        ["true"],
    )
    store = MemoryStore()

    with pytest.raises(SourceError, match=r"^sh failed \(exit 3\): Unknown database nope$"):
        backup(store, source)
    assert store.objects == {} and store.uploads == {}


def test_a_silent_failure_and_a_signal_are_described(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"false failed \(exit 1\): \(nothing on stderr\)"):
        backup(MemoryStore(), CommandSource(["false"], ["true"]))
    with pytest.raises(SourceError, match=r"sh failed \(killed by SIGKILL\)"):
        backup(MemoryStore(), CommandSource(["sh", "-c", "kill -9 $$"], ["true"]))


def test_a_message_on_stderr_fails_unless_told_otherwise(tmp_path: Path) -> None:
    noisy = ["sh", "-c", "printf data; echo 'Warning: table t is marked as crashed' >&2"]

    with pytest.raises(SourceError, match="sh wrote to stderr: Warning: table t is marked"):
        backup(MemoryStore(), CommandSource(noisy, ["true"]))

    store = MemoryStore()
    source = CommandSource(noisy, copy_to(tmp_path / "out"), fail_on_stderr=False)
    restore_artifact(store=store, entry=backup(store, source), source=source)
    assert (tmp_path / "out").read_bytes() == b"data"


def test_the_restore_tools_failure_and_stderr_fail_the_restore(tmp_path: Path) -> None:
    store = MemoryStore()
    entry = backup(store, CommandSource(["echo", "SELECT 1;"], ["true"]))

    failing = CommandSource(["true"], ["sh", "-c", "cat >/dev/null; echo 'ERROR 1064' >&2; exit 1"])
    with pytest.raises(SourceError, match=r"sh failed \(exit 1\): ERROR 1064"):
        restore_artifact(store=store, entry=entry, source=failing)

    chatty = ["sh", "-c", "cat >/dev/null; echo note >&2"]
    with pytest.raises(SourceError, match="wrote to stderr: note"):
        restore_artifact(store=store, entry=entry, source=CommandSource(["true"], chatty))
    quiet = CommandSource(["true"], chatty, fail_on_stderr=False)
    restore_artifact(store=store, entry=entry, source=quiet)


@pytest.mark.parametrize("before", [0, 40 * 1024])  # the reader keeps it all, or drops some
def test_a_secret_the_16_kib_stderr_cut_falls_inside_is_masked_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: int
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    # `password=<secret> ` then filler, so the cut 16 KiB from the end falls 13 bytes
    # before the secret's end: cutting, then redacting, kept `2-very-secret`. Each file
    # goes out in one write, so the reader sees the secret and the filler in one chunk.
    (tmp_path / "before").write_text("a" * before + "\n")
    said = "x" * 9000 + f"\npassword={SECRET} " + "b" * (STDERR_TAIL_BYTES - 1 - 13)
    (tmp_path / "said").write_text(said)
    complain = f"cat {tmp_path / 'before'} {tmp_path / 'said'} >&2; exit 1"
    source = CommandSource(["sh", "-c", complain], ["true"], password_env=SECRET_ENV)

    with pytest.raises(SourceError) as caught:
        backup(MemoryStore(), source)

    message = str(caught.value)
    assert message.startswith("sh failed (exit 1): ") and message.endswith("bbbb")
    assert not [piece for piece in pieces(SECRET) if piece in message], message[:80]


def pieces(secret: str, shortest: int = 5) -> list[str]:
    """Every part of `secret` at least `shortest` characters long."""
    n = len(secret)
    return [secret[i:j] for i in range(n) for j in range(i + shortest, n + 1)]


def test_secrets_in_the_tools_messages_are_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    # The tool reads the secret from the environment it inherits.
    complain = (
        f'echo "access denied for app:${SECRET_ENV}; using password: ${SECRET_ENV}" >&2; exit 2'
    )
    source = CommandSource(["sh", "-c", complain], ["true"], password_env=SECRET_ENV)

    with pytest.raises(SourceError) as caught:
        backup(MemoryStore(), source)

    message = str(caught.value)
    assert SECRET not in message
    assert message.startswith("sh failed (exit 2): access denied for app:***")

    store = MemoryStore()
    entry = backup(store, CommandSource(["echo", "x"], ["true"]))
    restorer = CommandSource(["true"], ["sh", "-c", complain], password_env=SECRET_ENV)
    with pytest.raises(SourceError) as caught:
        restore_artifact(store=store, entry=entry, source=restorer)
    assert SECRET not in str(caught.value) and "***" in str(caught.value)


@pytest.mark.parametrize("where", [0.1, 0.5, 0.99])
def test_a_tampered_artifact_never_reaches_the_restore_tool(tmp_path: Path, where: float) -> None:
    (tmp_path / "dump.bin").write_bytes(os.urandom(300_000))
    target, marker = tmp_path / "target", tmp_path / "restore tool ran"
    target.write_bytes(b"the data before the restore")
    work = tmp_path / "work"
    work.mkdir()
    restore_command = ["sh", "-c", 'touch "$1"; cat > "$0"', str(target), str(marker)]
    source = CommandSource(["cat", str(tmp_path / "dump.bin")], restore_command, work_dir=work)
    store = MemoryStore()
    entry = backup(store, source)
    data = bytearray(store.objects[entry.key])
    data[int(len(data) * where)] ^= 0x01
    store.objects[entry.key] = bytes(data)

    with pytest.raises(IntegrityError):
        restore_artifact(store=store, entry=entry, source=source)

    assert not marker.exists()
    assert target.read_bytes() == b"the data before the restore"
    assert staged_files(work) == []


def test_a_missing_executable_says_it_is_not_installed(tmp_path: Path) -> None:
    missing = "backfleet-no-such-tool"
    with pytest.raises(SourceError, match=f"^{missing} is not installed"):
        backup(MemoryStore(), CommandSource([missing, "--all"], ["true"]))

    store = MemoryStore()
    entry = backup(store, CommandSource(["echo", "x"], ["true"]))
    work = tmp_path / "work"
    work.mkdir()
    source = CommandSource(["true"], [str(tmp_path / missing)], work_dir=work)
    with pytest.raises(SourceError, match="is not installed"):
        restore_artifact(store=store, entry=entry, source=source)
    assert staged_files(work) == []

    (tmp_path / "not executable").write_text("#!/bin/sh\n")
    with pytest.raises(SourceError, match="cannot be run: permission denied"):
        backup(MemoryStore(), CommandSource([str(tmp_path / "not executable")], ["true"]))


def descendants_gone(pid_file: Path, wait: float = 5.0) -> bool:
    """The tool's child is dead (or a zombie) within `wait` s: a signal takes a moment to land."""
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + wait
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@pytest.mark.timeout(30)
def test_a_pipeline_that_stops_early_terminates_the_tool_and_its_children(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "child.pid"
    # `sleep` never writes, so only a stop of the whole group ends it (no SIGPIPE would).
    tool = ["sh", "-c", 'sleep 600 & echo $! > "$0"; yes', str(pid_file)]
    started = time.monotonic()

    with pytest.raises(RuntimeError), CommandSource(tool, ["true"]).dump() as dump:
        assert len(dump.stream.read(65536)) == 65536
        raise RuntimeError("upload failed")

    assert time.monotonic() - started < 10
    assert descendants_gone(pid_file)


@pytest.mark.timeout(30)
def test_a_reader_that_stops_reading_fails_the_dump_without_hanging(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not read to the end"):  # noqa: SIM117
        with CommandSource(["sh", "-c", "yes; sleep 600"], ["true"]).dump() as dump:
            dump.stream.read(10)


@pytest.mark.timeout(30)
def test_a_tool_that_produces_nothing_and_hangs_is_stopped_on_failure(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), CommandSource(["sleep", "600"], ["true"]).dump():
        raise KeyboardInterrupt


def test_tools_get_only_the_base_variables_their_env_list_and_their_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BF_TEST_VALUE", "from the worker")
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv("AWS_SECRET_KEY", "aws-secret-never-shown")
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", "AGE-SECRET-KEY-never-shown")
    monkeypatch.setenv("TZ", "UTC")
    store = MemoryStore()
    source = CommandSource(
        ["env"], copy_to(tmp_path / "o"), env=["BF_TEST_VALUE"], password_env=SECRET_ENV
    )
    restore_artifact(store=store, entry=backup(store, source), source=source)
    seen = dict(line.split("=", 1) for line in (tmp_path / "o").read_text().splitlines())
    assert set(seen) <= {"PATH", "HOME", "LANG", "TZ", "BF_TEST_VALUE", SECRET_ENV, "PWD"}
    assert seen["BF_TEST_VALUE"] == "from the worker" and seen[SECRET_ENV] == SECRET
    assert seen["PATH"] == os.environ["PATH"] and seen["TZ"] == "UTC"


def test_every_fleet_secret_is_masked_in_the_tools_messages(tmp_path: Path) -> None:
    source = CommandSource(
        ["sh", "-c", "echo 'key is s3cret-from-the-fleet' >&2; exit 1"],
        ["true"],
        secrets=["s3cret-from-the-fleet"],
    )
    with pytest.raises(SourceError) as caught:
        backup(MemoryStore(), source)
    assert "s3cret" not in str(caught.value) and "key is ***" in str(caught.value)


def test_the_dump_tool_cannot_wait_on_the_workers_stdin(tmp_path: Path) -> None:
    # A tool that reads stdin (a password prompt) sees end of file, not the worker's terminal.
    store = MemoryStore()
    source = CommandSource(["sh", "-c", "cat; printf done"], copy_to(tmp_path / "o"))
    restore_artifact(store=store, entry=backup(store, source), source=source)
    assert (tmp_path / "o").read_bytes() == b"done"


def test_make_source_builds_a_command_source_from_the_services_file(tmp_path: Path) -> None:
    config = parse_fleet_config(
        """
        [services.mariadb]
        kind = "command"
        dump_command = ["mysqldump", "--databases", "app"]
        restore_command = ["mysql"]
        format = "sql"
        fail_on_stderr = false
        password_env = "MYSQL_PWD"
        env = ["MYSQL_HOST", "TMPDIR"]
        [services.other]
        kind = "command"
        dump_command = ["neo4j-admin", "database", "dump", "--to-stdout", "neo4j"]
        restore_command = ["neo4j-admin", "database", "load", "--from-stdin", "neo4j"]
        """
    )
    settings = Settings(backfleet_work_dir=tmp_path)
    services = config.services_of("app")

    source = make_source(services["mariadb"], settings)
    assert isinstance(source, CommandSource)
    assert (source.kind, source.format, source.fail_on_stderr) == ("command", "sql", False)
    assert source.dump_command == ["mysqldump", "--databases", "app"]
    assert source.restore_command == ["mysql"]
    assert (source.password_env, source.work_dir) == ("MYSQL_PWD", tmp_path)
    assert source.env == ["MYSQL_HOST", "TMPDIR"]

    other = make_source(services["other"], settings)
    assert (other.format, CommandSource.format) == ("dump", "dump")
    assert isinstance(other, CommandSource) and other.fail_on_stderr is True

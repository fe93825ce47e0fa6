"""A command service's drill (workers/sources/command_drill.py) and its counts
(count_command before each dump), with small shell tools, the real pipeline and the
in-memory store."""

import re
from pathlib import Path

import pytest

from tests.fakes import stored_entry
from workers.errors import IntegrityError, SourceError
from workers.repository.manifest import ArtifactEntry, artifact_key
from workers.services_config import ServiceSpec, parse_fleet_config
from workers.settings import Settings
from workers.sources import make_source, source_class
from workers.sources.command import CommandSource
from workers.sources.command_tools import parse_counts
from workers.stores.memory import MemoryStore
from workers.transfer.download import restore_artifact

DUMP = b"INSERT 1;\nINSERT 2;\nINSERT 3;\n"


def spec(test_restore: list[str], **more: object) -> ServiceSpec:
    return ServiceSpec(
        kind="command",
        dump_command=["printf", DUMP.decode()],
        restore_command=["true"],
        test_restore_command=test_restore,
        **more,  # type: ignore[arg-type]
    )


def back_up(store: MemoryStore, service: ServiceSpec) -> ArtifactEntry:
    source = make_source(service, Settings())
    key = artifact_key("app", "2024-01-02t03-04-05", "tool", source.format, "zstd")
    return stored_entry(store, source, key=key, service="tool")


def test_counts_are_name_count_lines() -> None:
    assert parse_counts("people\t3004\n\nodd name  2\n", "x") == {"people": 3004, "odd name": 2}
    assert parse_counts("", "x") == {}
    with pytest.raises(SourceError, match=r"x printed line 2, 'oops', where a `name count`"):
        parse_counts("a 1\noops\n", "x")
    with pytest.raises(SourceError, match="line 1"):
        parse_counts("a -1\n", "x")


def test_count_command_runs_before_the_dump_and_a_failing_one_only_notes_it() -> None:
    store = MemoryStore()
    counted = back_up(store, spec(["true"], count_command=["printf", "people 3\\nlog 2\\n"]))
    assert counted.source["row_counts"] == {"people": 3, "log": 2}
    failing = spec(["true"], count_command=["sh", "-c", "echo cannot count >&2; exit 3"])
    entry = back_up(store, failing)  # the backup itself is good: it is stored
    assert "row_counts" not in entry.source
    assert entry.source["count_error"] == "sh failed (exit 3): cannot count"


def test_the_drill_restores_into_the_named_scratch_with_the_tools_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_KEY", "a-fleet-secret")  # a worker's: never a tool's
    seen = tmp_path / "seen"
    seen.mkdir()
    script = 'cat > "$1/stdin"; echo "$BACKFLEET_SCRATCH" > "$1/name"; env > "$1/env"; '
    script += 'printf "people 3\\n"'
    service = spec(["sh", "-c", script, "drill", str(seen)], count_command=["echo", "people 3"])
    store = MemoryStore()
    entry = back_up(store, service)
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    target = source_class("command").restore_test_target(service, scratch, time_limit=60)
    assert target is not None
    with target as drill:
        restore_artifact(store=store, entry=entry, source=drill.target)
        drill.check([entry.source])
        assert drill.found == {"people": 3}
        wrong = {**entry.source, "row_counts": {"people": 4}}
        with pytest.raises(IntegrityError, match="people: 4 recorded, 3 restored"):
            drill.check([wrong])

    assert (seen / "stdin").read_bytes() == DUMP  # decompressed, verified, then fed
    name = (seen / "name").read_text().strip()
    assert re.fullmatch(r"backfleet_drill_[0-9a-f]{12}", name)
    env = (seen / "env").read_text()
    assert f"BACKFLEET_SCRATCH={name}" in env and "a-fleet-secret" not in env
    assert list(scratch.iterdir()) == []  # the staged copy is gone


def test_counts_are_compared_only_when_the_backup_recorded_them(tmp_path: Path) -> None:
    store = MemoryStore()
    quiet = spec(["sh", "-c", "cat > /dev/null; echo restored"])
    entry = back_up(store, quiet)
    target = source_class("command").restore_test_target(quiet, tmp_path)
    assert target is not None
    with target as drill:
        restore_artifact(store=store, entry=entry, source=drill.target)
        drill.check([entry.source])  # exit 0, nothing to compare: it passes
        assert drill.found == {}
    # Counts recorded: a command that prints none, or something else, fails the drill.
    recorded = {**entry.source, "row_counts": {"people": 3}}
    for argv, error in (
        (["sh", "-c", "cat > /dev/null"], "printed no `name count` lines to compare with the 1"),
        (quiet.test_restore_command, "printed line 1, 'restored'"),
    ):
        target = source_class("command").restore_test_target(spec(argv or []), tmp_path)
        assert target is not None
        with target as drill:
            restore_artifact(store=store, entry=entry, source=drill.target)
            with pytest.raises((IntegrityError, SourceError), match=error):
                drill.check([recorded])


@pytest.mark.parametrize(
    ("argv", "fail_on_stderr", "error"),
    [
        (["sh", "-c", "cat >/dev/null; echo no >&2; exit 4"], True, r"failed \(exit 4\): no"),
        (["sh", "-c", "cat >/dev/null; echo chatty >&2"], True, "wrote to stderr: chatty"),
        (["sh", "-c", "cat >/dev/null; echo chatty >&2"], False, None),
        (["sh", "-c", "cat >/dev/null; exec sleep 60"], True, r"timed out after 0.5 s, stopped"),
    ],
)
def test_exit_status_stderr_and_the_time_limit(
    tmp_path: Path, argv: list[str], fail_on_stderr: bool, error: str | None
) -> None:
    service = spec(argv, fail_on_stderr=fail_on_stderr)
    store = MemoryStore()
    entry = back_up(store, spec(["true"]))
    target = source_class("command").restore_test_target(service, tmp_path, time_limit=0.5)
    assert target is not None
    with target as drill:
        if error is None:
            restore_artifact(store=store, entry=entry, source=drill.target)
        else:
            with pytest.raises(SourceError, match=error):
                restore_artifact(store=store, entry=entry, source=drill.target)


def test_the_new_keys_belong_to_command_services_and_are_argv_lists() -> None:
    base = '[services.x]\nkind = "sqlite"\npath = "/data/x.db"\n'
    with pytest.raises(Exception, match='`test_restore_command` is only for kind = "command"'):
        parse_fleet_config(base + 'test_restore_command = ["true"]\n')
    with pytest.raises(Exception, match='`count_command` is only for kind = "command"'):
        parse_fleet_config(base + 'count_command = ["true"]\n')
    command = '[services.x]\nkind = "command"\ndump_command = ["a"]\nrestore_command = ["b"]\n'
    with pytest.raises(Exception, match="must be a list of strings"):
        parse_fleet_config(command + 'test_restore_command = "drill.sh"\n')
    config = parse_fleet_config(command + 'test_restore_command = ["drill.sh", "app"]\n')
    assert config.services_of("app")["x"].test_restore_command == ["drill.sh", "app"]
    assert isinstance(make_source(config.services_of("app")["x"], Settings()), CommandSource)

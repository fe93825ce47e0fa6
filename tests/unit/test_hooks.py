"""A service's hooks run as real programs (workers/sources/hooks.py): their environment,
their output (bounded, redacted), their exit, their time limit."""

import time
from pathlib import Path
from typing import Any

import pytest

from workers.redact import redact
from workers.sources.hooks import OUTPUT_TAIL_BYTES, run_hook
from workers.sources.process import StderrTail


def test_a_hook_gets_only_the_base_variables_its_env_and_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", "AGE-SECRET-KEY-1NOTREALLYAKEY")
    monkeypatch.setenv("AWS_SECRET_KEY", "aws-secret-for-a-test")
    monkeypatch.setenv("INCUS_REMOTE", "local")
    monkeypatch.setenv("HOOK_PW", "hook-password-77")
    result = run_hook("pre", ["env"], env=["INCUS_REMOTE"], password_env="HOOK_PW", timeout=30)
    assert result.ok and result.detail == "exit 0"
    names = {line.split("=", 1)[0] for line in result.output.splitlines()}
    assert names <= {"PATH", "HOME", "LANG", "TZ", "INCUS_REMOTE", "HOOK_PW"}
    assert "INCUS_REMOTE=local" in result.output
    assert "hook-password-77" not in result.output  # there, but masked in the record
    assert "BACKUP_ENCRYPTION_KEY" not in result.output and "AWS_SECRET_KEY" not in result.output


def test_a_failing_hook_says_how_it_ended_and_what_it_said_redacted() -> None:
    script = (
        'echo "connecting with password=hunter2-xyz"; echo "token in fleet-secret-9" >&2; exit 3'
    )
    result = run_hook("pre", ["sh", "-c", script], secrets=["fleet-secret-9"], timeout=30)
    assert not result.ok and result.detail == "exit 3" and result.program == "sh"
    assert "hunter2-xyz" not in result.output and "fleet-secret-9" not in result.output
    assert "connecting with password=***" in result.output and "token in ***" in result.output
    assert result.summary().startswith("pre hook sh failed (exit 3): connecting")


def test_only_the_tail_of_a_chatty_hook_is_kept() -> None:
    script = "for i in $(seq 1 3000); do echo line-$i; done"
    result = run_hook("post", ["sh", "-c", script], timeout=60)
    assert result.ok and len(result.output.encode()) <= OUTPUT_TAIL_BYTES
    assert result.output.endswith("line-3000") and "line-1\n" not in result.output


def test_a_missing_program_is_a_failed_hook_not_an_exception_and_says_so_in_one_sentence(
    tmp_path: Path,
) -> None:
    result = run_hook("pre", ["backfleet-no-such-hook-program"], timeout=30)
    assert not result.ok and not result.started
    assert result.detail == "backfleet-no-such-hook-program is not on the worker's PATH"
    assert result.summary() == (
        "pre hook backfleet-no-such-hook-program could not start: "
        "backfleet-no-such-hook-program is not on the worker's PATH"
    )
    gone = tmp_path / "bin" / "incus"
    assert run_hook("post", [str(gone)], timeout=30).summary() == (
        f"post hook incus could not start: {gone} does not exist"
    )
    (tmp_path / "script").write_text("#!/bin/sh\n")  # not executable
    denied = run_hook("pre", [str(tmp_path / "script")], timeout=30)
    assert denied.summary() == (
        f"pre hook script could not start: {tmp_path / 'script'} cannot be run: permission denied"
    )


def pieces(secret: str, shortest: int = 5) -> list[str]:
    """Every part of `secret` at least `shortest` characters long."""
    n = len(secret)
    return [secret[i:j] for i in range(n) for j in range(i + shortest, n + 1)]


@pytest.mark.parametrize("before", [0, 40 * 1024])  # the reader keeps it all, or drops some
def test_a_secret_the_4_kib_output_cut_falls_inside_is_masked_whole(
    tmp_path: Path, before: int
) -> None:
    # A password (by its shape) and a fleet secret (by its value), each so that the cut
    # 4 KiB from the end falls inside it; cutting, then redacting, kept their ends. Each
    # file goes out in one write: the reader gets the secret and the filler in one chunk.
    password, fleet_secret = "hunter2-very-secret", "fleet-secret-0123456789"
    (tmp_path / "before").write_text("a" * before + "\n")
    said = "x" * 9000 + f"\npassword={password} " + "b" * (OUTPUT_TAIL_BYTES - 1 - 13)
    (tmp_path / "password").write_text(said)
    said = "x" * 9000 + f"\nkey {fleet_secret} " + "b" * (OUTPUT_TAIL_BYTES - 1 - 10)
    (tmp_path / "fleet").write_text(said)

    for name, secret in (("password", password), ("fleet", fleet_secret)):
        script = f"cat {tmp_path / 'before'} {tmp_path / name}"
        result = run_hook("post", ["sh", "-c", script], secrets=[fleet_secret], timeout=30)
        assert result.ok and result.output.endswith("bbbb")
        assert len(result.output.encode()) <= OUTPUT_TAIL_BYTES
        assert not [piece for piece in pieces(secret) if piece in result.output], name


def test_redaction_that_shortens_the_kept_output_never_reaches_a_cut_secrets_end(
    tmp_path: Path,
) -> None:
    """The reader dropped the output's start, so what it kept may begin with the end of a
    secret whose start is gone; redaction then shortens the rest (each long secret becomes
    `***`): the tail must still not reach back to that end."""
    secret = "s3cr3t-" + "q" * 93  # 100 characters
    pipe = _Chunks([b"y" * 30000, secret.encode() * 300])  # the first chunk is dropped
    tail = StderrTail(pipe, limit=4096, margin=4096)  # type: ignore[arg-type]
    kept = tail.text(lambda said: redact(said, [secret]))
    assert "q" not in kept.replace("***", "")
    assert len(kept.encode()) <= 4096


def test_a_hook_past_its_time_limit_is_stopped_with_everything_it_started(
    tmp_path: Path,
) -> None:
    child = tmp_path / "child.pid"
    script = f"sleep 300 & echo $! > {child}; wait"
    result = run_hook("pre", ["sh", "-c", script], timeout=1)
    assert not result.ok and result.detail == "timed out after 1 s, stopped"
    assert not _running(int(child.read_text()))


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for whoever adopted it to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_stopped_hooks_children_are_gone_even_when_it_ignores_sigterm(tmp_path: Path) -> None:
    child = tmp_path / "child.pid"
    script = f"trap '' TERM; sleep 300 & echo $! > {child}; while :; do sleep 1; done"
    result = run_hook("pre", ["sh", "-c", script], timeout=1)
    assert not result.ok and "timed out" in result.detail
    pid = int(child.read_text())
    # SIGKILL was sent to its whole group; a loaded machine may take a moment to end it.
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid)


def test_check_says_whether_each_hook_program_is_installed(tmp_path: Path) -> None:
    from workers.errors import ConfigError
    from workers.monitoring.checks import check_source
    from workers.services_config import parse_fleet_config

    def spec(pre: str) -> Any:
        text = f'[services.files]\nkind = "directory"\npath = "{tmp_path}"\n'
        text += f'[services.files.hooks]\npre = ["{pre}"]\npost = ["true"]\n'
        return parse_fleet_config(text).services_of("app")["files"]

    assert check_source(spec("sh")).endswith("; hook programs found")
    with pytest.raises(ConfigError, match="hook program not installed: backfleet-no-such-hook"):
        check_source(spec("backfleet-no-such-hook"))


class _Chunks:
    """A pipe that hands out these chunks, one per read."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def read1(self, size: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def __enter__(self) -> "_Chunks":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_a_post_hooks_timeout_must_fit_between_the_soft_and_the_hard_time_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the soft time limit stops a backup during its dump, `post` has what is left
    before the hard kill: a longer timeout is refused when the fleet is built."""
    from workers.errors import ConfigError
    from workers.fleet import build_fleet
    from workers.settings import Settings

    config = tmp_path / "backfleet.toml"

    def fleet(hooks: str, **settings: Any) -> None:
        config.write_text(
            f'[services.files]\nkind = "directory"\npath = "{tmp_path}"\n'
            f"[services.files.hooks]\n{hooks}\n"
        )
        build_fleet(
            Settings(
                backfleet_config=config,
                object_store_location_local=tmp_path / "store",
                database_url=f"sqlite:///{tmp_path}/catalog.db",
                **settings,
            )
        )

    for name in ("BACKUP_HOOK_TIMEOUT", "BACKUP_SOFT_TIME_LIMIT", "BACKUP_TIME_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    fleet('post = ["true"]')  # the defaults: 10m, and 600 s between the limits
    fleet('post = ["true"]\ntimeout = "20m"', backup_time_limit=36000 + 1200)
    fleet('pre = ["true"]\ntimeout = "2h"')  # the soft limit stops `pre`: no bound
    with pytest.raises(ConfigError) as caught:
        fleet('pre = ["true"]\npost = ["true"]\ntimeout = "20m"')
    assert str(caught.value) == (
        "service files (namespace app): hooks.timeout 20m (1200 s) is longer than "
        "BACKUP_TIME_LIMIT - BACKUP_SOFT_TIME_LIMIT (600 s), all a post hook has once the "
        "soft time limit stops the backup: shorten it, or raise BACKUP_TIME_LIMIT (below "
        "CELERY_VISIBILITY_TIMEOUT)"
    )
    with pytest.raises(ConfigError, match=r"^BACKUP_HOOK_TIMEOUT 30m \(1800 s\), the timeout"):
        fleet('post = ["true"]', backup_hook_timeout="30m")
    with pytest.raises(ConfigError, match=r"BACKUP_TIME_LIMIT - BACKUP_SOFT_TIME_LIMIT \(5 s\)"):
        fleet('post = ["true"]', backup_soft_time_limit=5, backup_time_limit=10)

"""A service's hooks run as real programs (workers/sources/hooks.py): their environment,
their output (bounded, redacted), their exit, their time limit."""

from pathlib import Path
from typing import Any

import pytest

from workers.sources.hooks import OUTPUT_TAIL_BYTES, run_hook


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


def test_a_missing_program_is_a_failed_hook_not_an_exception() -> None:
    result = run_hook("pre", ["backfleet-no-such-hook-program"], timeout=30)
    assert not result.ok and "is not installed" in result.detail


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
    assert not _running(int(child.read_text()))


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

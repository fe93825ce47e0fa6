"""A command service's drill: its `test_restore_command` restores the backup into scratch.

The artifact is staged and verified exactly as a command restore does
(command_tools.staged: nothing reaches the tool unless every stored byte matched
the manifest), then fed to `test_restore_command` on stdin, with the minimal
environment of the service's tools (PATH, HOME, LANG, TZ, its `env` and its
`password_env`) plus BACKFLEET_SCRATCH: a fresh name (`backfleet_drill_<12 hex>`)
the command restores into, e.g. a scratch database it creates. Creating and
removing the scratch is the command's own business (drop it at the start and at
the end). Past its time limit its whole process group is stopped. It passes
when it exits 0 (and, unless `fail_on_stderr = false`, writes nothing to stderr).

Counts: when the manifest recorded `row_counts` (the service's `count_command`
ran before the dump), the command must print the same `name count` lines for what
the scratch holds (command_tools.parse_counts); any difference fails the drill.
Without recorded counts, what it prints is kept when it reads as counts, and only
the exit status and the bytes restored are judged.
"""

import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar

from workers.child_env import tool_env
from workers.errors import IntegrityError, SourceError
from workers.services_config import DEFAULT_COMMAND_FORMAT, ServiceSpec
from workers.sources.base import OneStream, RestoreStream, ScratchRestore, compare_row_counts
from workers.sources.command_tools import parse_counts, run_bounded, staged
from workers.sources.process import exit_status, redact_output

SCRATCH_VARIABLE = "BACKFLEET_SCRATCH"
DEFAULT_TIME_LIMIT = 3600.0  # seconds, when the drill names none


class ScratchCommand(OneStream):
    """Restores through `test_restore_command` into the scratch named `scratch_name`."""

    kind: ClassVar[str] = "command"

    def __init__(
        self, spec: ServiceSpec, scratch_name: str, work_dir: Path, time_limit: float
    ) -> None:
        assert spec.test_restore_command
        self.argv = list(spec.test_restore_command)
        self.format = spec.format or DEFAULT_COMMAND_FORMAT
        self.fail_on_stderr = spec.fail_on_stderr
        self.password_env = spec.password_env
        self.env_names = list(spec.env or ())
        self.scratch_name = scratch_name
        self.work_dir = work_dir
        self.time_limit = time_limit
        self.output = ""  # what the command printed on stdout

    def dump(self) -> Any:
        raise SourceError("a drill's scratch target is only restored into")

    def restore(self, stream: RestoreStream) -> None:
        env = {**tool_env(self.env_names, self.password_env), SCRATCH_VARIABLE: self.scratch_name}
        prefix, suffix = ".backfleet-drill-", f".{self.format}"
        with staged(stream, directory=self.work_dir, prefix=prefix, suffix=suffix) as file:
            run = run_bounded(self.argv, env=env, stdin=file, timeout=self.time_limit)
        said = run.stderr.text(  # redacted before the cut
            lambda text: redact_output(text, password_env=self.password_env, secrets=())
        )
        what = f"test_restore_command {self.argv[0]}"
        if run.returncode != 0:
            raise SourceError(
                f"{what} failed ({exit_status(run.returncode)}): {said or '(nothing on stderr)'}"
            )
        if said and self.fail_on_stderr:
            raise SourceError(f"{what} wrote to stderr: {said}")
        self.output = run.stdout


@contextmanager
def scratch_command(
    spec: ServiceSpec, scratch: Path, *, time_limit: float | None = None
) -> Iterator[ScratchRestore]:
    """The drill's target (the command, a fresh scratch name) and its check of the counts."""
    name = f"backfleet_drill_{secrets.token_hex(6)}"
    target = ScratchCommand(spec, name, scratch, time_limit or DEFAULT_TIME_LIMIT)
    found: dict[str, int] = {}
    what = "test_restore_command"

    def check(facts: Sequence[Mapping[str, Any]]) -> None:
        recorded = facts[0].get("row_counts")
        if recorded is None:  # nothing recorded to compare with: keep what reads as counts
            with suppress(SourceError):
                found.update(parse_counts(target.output, what))
            return
        found.update(parse_counts(target.output, what))
        if not found:
            raise IntegrityError(
                f"{what} printed no `name count` lines to compare with the "
                f"{len(recorded)} counts recorded at backup time"
            )
        compare_row_counts(facts[0], found)

    yield ScratchRestore(target, check, found)

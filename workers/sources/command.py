"""Any tool that dumps to stdout and restores from stdin: `kind = "command"` services.

Dump: `dump_command` runs (an argv list, no shell, a minimal environment:
PATH, HOME, LANG, TZ, the variables the service's `env` names and its
`password_env`, never the worker's other secrets; stdin from /dev/null so a
password prompt cannot hang it) and its stdout IS the artifact, streamed:
memory stays at a pipe buffer whatever the dump's size. Its stderr is
collected (the last 16 KiB). At the end a non-zero exit fails the artifact
with the tool's message; so does any stderr output at all unless
`fail_on_stderr = false` (for tools that chatter there). Messages are
redacted: secret-shaped values (workers.redact) and every secret the fleet
knows (`secrets`, which includes the value of `password_env`). If the pipeline
stops early (an upload failed, the task was revoked) the tool's whole process
group is terminated, so `sh -c "a | b"` and the like stop too.

Restore: a command cannot be held back from committing the way a database
transaction can — whatever it reads, it applies. So the artifact is STAGED:
the decompressed stream is written to a private temporary file (mode 0600) in
BACKFLEET_WORK_DIR (else the system's temporary directory), `stream.verify()`
checks every stored byte against the manifest, and only then does
`restore_command` run with that file as its stdin. A corrupt or tampered
artifact therefore never reaches the tool. The cost is disk: the work
directory needs free space for one whole *uncompressed* dump (its
`source_size` in the manifest) for as long as the restore runs. The file is
removed whatever happens; its name carries a digest of the restore command,
so the next restore of the service (`recover()`) removes one a killed worker
left. Whether the tool itself applies its input all at once or not at all is
the tool's own promise: Backfleet starts it only with a complete, verified input.

Counts: with `count_command`, that command runs just before each dump and its `name
count` lines become the manifest's `row_counts` (a failure is noted as `count_error`
and never fails the backup). Drills: with `test_restore_command` the service is
restored into scratch (command_drill.py), whose printed counts must equal those.
"""

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, ClassVar

from workers.child_env import tool_env
from workers.errors import ConfigError, SourceError
from workers.services_config import DEFAULT_COMMAND_FORMAT as DEFAULT_FORMAT
from workers.services_config import ServiceSpec
from workers.settings import Settings, parse_duration
from workers.sources.base import Dump, OneStream, RestoreStream, ScratchRestore
from workers.sources.command_drill import scratch_command
from workers.sources.command_tools import parse_counts, run_bounded, staged
from workers.sources.process import (
    PolledPipe,
    StderrTail,
    exit_status,
    redact_output,
    spawn,
    stop_group,
    wait_for_exit,
)

log = logging.getLogger(__name__)
COUNT_TIMEOUT = 600.0  # seconds; from_spec gives BACKUP_HOOK_TIMEOUT


class _Output:
    """The tool's stdout, remembering whether it was read to the end."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe = PolledPipe(pipe)
        self.at_end = False

    def read(self, size: int = -1, /) -> bytes:
        data = self._pipe.read(size)
        if not data and size != 0:
            self.at_end = True
        return data


class CommandSource(OneStream):
    kind: ClassVar[str] = "command"
    format: str = DEFAULT_FORMAT  # per service: an instance attribute (the artifact's extension)

    def __init__(
        self,
        dump_command: Sequence[str],
        restore_command: Sequence[str],
        *,
        format: str = DEFAULT_FORMAT,
        fail_on_stderr: bool = True,
        password_env: str | None = None,
        env: Sequence[str] = (),
        secrets: Sequence[str] = (),
        work_dir: Path | None = None,
        count_command: Sequence[str] | None = None,
        count_timeout: float = COUNT_TIMEOUT,
    ) -> None:
        if not dump_command or not restore_command:
            raise ValueError("a command source needs a dump and a restore command")
        self.dump_command = list(dump_command)
        self.restore_command = list(restore_command)
        self.format = format
        self.fail_on_stderr = fail_on_stderr
        self.password_env = password_env
        self.env = list(env)
        self.secrets = list(secrets)  # the fleet's: masked in the tools' messages
        self.work_dir = work_dir
        self.count_command = list(count_command) if count_command else None
        self.count_timeout = count_timeout

    @classmethod
    def from_spec(
        cls, spec: ServiceSpec, settings: Settings, secrets: Sequence[str]
    ) -> "CommandSource":
        assert spec.dump_command is not None and spec.restore_command is not None
        return cls(
            spec.dump_command,
            spec.restore_command,
            format=spec.format or DEFAULT_FORMAT,
            fail_on_stderr=spec.fail_on_stderr,
            password_env=spec.password_env,
            env=spec.env or (),
            secrets=secrets,
            work_dir=settings.backfleet_work_dir,
            count_command=spec.count_command,
            count_timeout=parse_duration(settings.backup_hook_timeout),
        )

    @classmethod
    def probe(cls, spec: ServiceSpec) -> str:
        commands = [spec.dump_command, spec.restore_command]
        commands += [spec.test_restore_command, spec.count_command]
        missing = [argv[0] for argv in commands if argv and shutil.which(argv[0]) is None]
        if missing:
            raise ConfigError(f"not installed: {', '.join(missing)}")
        return "commands found"

    @classmethod
    def restore_test_unavailable(cls, spec: ServiceSpec) -> str | None:
        if spec.test_restore_command:
            return None
        return (
            "not configured: a command service is drilled only with `test_restore_command`, "
            "an argv that restores its stdin into the scratch target named by "
            "$BACKFLEET_SCRATCH"
        )

    @classmethod
    def restore_test_target(
        cls, spec: ServiceSpec, scratch: Path, *, time_limit: float | None = None
    ) -> AbstractContextManager[ScratchRestore] | None:
        if cls.restore_test_unavailable(spec) is not None:
            return None
        return scratch_command(spec, scratch, time_limit=time_limit)

    # --- dump ---
    @contextmanager
    def dump(self) -> Iterator[Dump]:
        command = self.dump_command
        process = self._spawn(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        errors = StderrTail(process.stderr)
        assert process.stdout is not None
        output = _Output(process.stdout)
        facts: dict[str, Any] = {"kind": self.kind, "command": os.path.basename(command[0])}
        facts.update(self._counts())  # read when the dump ends, so taken before it starts
        try:
            yield Dump(stream=output, facts=facts)
        except BaseException:
            stop_group(process)
            raise
        finally:
            process.stdout.close()
        if not output.at_end:
            stop_group(process)
            raise SourceError(f"the output of {command[0]} was not read to the end")
        wait_for_exit(process)
        self._check(command, process.returncode, errors)

    def _counts(self) -> dict[str, Any]:
        """`row_counts` from count_command, run just before the dump (outside the dump's
        own snapshot); a count that fails is noted as `count_error`, never failing the backup."""
        if not self.count_command:
            return {}
        what = f"count_command {self.count_command[0]}"
        try:
            run = run_bounded(
                self.count_command,
                env=self._child_env(),
                stdin=subprocess.DEVNULL,
                timeout=self.count_timeout,
            )
            self._check(self.count_command, run.returncode, run.stderr)
            return {"row_counts": parse_counts(run.stdout, what)}
        except SourceError as exc:
            reason = self._clean(str(exc))
            log.warning("%s: no counts recorded: %s", what, reason)
            return {"count_error": reason}

    # --- restore ---
    def restore(self, stream: RestoreStream) -> None:
        prefix, suffix = self._staging_prefix(), f".{self.format}"
        with staged(stream, directory=self.work_dir, prefix=prefix, suffix=suffix) as file:
            self._run_restore(file)

    def recover(self) -> None:
        """Remove the staged file a killed restore of this service left in the work directory."""
        folder = Path(self.work_dir or tempfile.gettempdir())
        if not folder.is_dir():
            return
        for name in os.listdir(folder):
            if name.startswith(self._staging_prefix()):
                log.warning("removing %s, left by a restore that was killed", folder / name)
                (folder / name).unlink(missing_ok=True)

    def _staging_prefix(self) -> str:
        # Named after the service's restore command: another service's restore, running
        # at the same time from the same work directory, keeps its own staged file.
        what = "\0".join([*self.restore_command, self.format]).encode()
        return f".backfleet-restore-{hashlib.sha256(what).hexdigest()[:16]}-"

    def _run_restore(self, staged: IO[bytes]) -> None:
        command = self.restore_command
        process = self._spawn(command, stdin=staged, stdout=subprocess.DEVNULL)
        errors = StderrTail(process.stderr)
        try:
            wait_for_exit(process)
        except BaseException:  # e.g. the task's time limit: the tool must not run on
            stop_group(process)
            raise
        self._check(command, process.returncode, errors)

    # --- running the tools ---
    def _spawn(self, command: list[str], **kwargs: Any) -> "subprocess.Popen[bytes]":
        return spawn(command, env=self._child_env(), **kwargs)

    def _check(self, command: list[str], returncode: int, errors: StderrTail) -> None:
        complaint = errors.text(self._clean)  # redacted before the cut
        if returncode != 0:
            said = complaint or "(nothing on stderr)"
            raise SourceError(f"{command[0]} failed ({exit_status(returncode)}): {said}")
        if complaint and self.fail_on_stderr:
            raise SourceError(f"{command[0]} wrote to stderr: {complaint}")
        if complaint:
            log.warning("%s succeeded with messages: %s", command[0], complaint)

    def _child_env(self) -> dict[str, str]:
        return tool_env(self.env, self.password_env)

    def _clean(self, text: str) -> str:
        return redact_output(text, password_env=self.password_env, secrets=self.secrets)

"""A service's hooks around its part of a backup (`[services.<name>.hooks]`).

`pre` runs before the service is dumped (before its source is even built, so it
may make what the dump reads: a snapshot, an export). If it fails, times out or
cannot start, the service's artifact fails with the hook's message, and so the
backup, as with any failed artifact. `post` runs after the dump whatever
happened (the artifact stored or failed, `pre` failed or timed out): it is
what puts things back. A failed `post` does not throw away an artifact that
was stored: the backup keeps its status, and gets a warning (`backups.warning`),
a `backup.hook_failed` alert and a log line at WARNING.

The soft time limit stops `pre` (and the dump) at once, but not `post`: it runs
on, recorded, and only then is the task stopped. No hook runs past the task's
hard time limit less a margin (hooks_deadline); the services file's hook
timeouts are checked to fit the soft-to-hard window when the fleet is built
(services_config: check_hook_timeouts). A redelivered backup runs the `post`
of a service an earlier attempt stored if that attempt's `post` did not end
(run_owed_post).

Every run is recorded: a `hook_runs` row (the program's name, how it ended, the
redacted tail of its output), a log line at INFO, and an audit event
`BackupHook` (with ENABLE_USER_EVENTS). Recording never fails the backup (the
soft time limit arriving meanwhile still stops it).
"""

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from billiard.exceptions import SoftTimeLimitExceeded

from workers.audit.user_events import payload_json, record_system_event
from workers.catalog.db import Session, session_scope, write_catalog
from workers.catalog.hook_runs import add_backup_warning, post_owed, record_hook_run
from workers.errors import SourceError, reason_of
from workers.fleet import Fleet
from workers.monitoring.notify import report_hook_failure
from workers.redact import redact
from workers.services_config import ServiceSpec
from workers.settings import Settings
from workers.sources.hooks import HookName, HookResult, run_hook

log = logging.getLogger(__name__)
_Change = Callable[[Session], None]
# What a hook leaves the task before its hard kill (BACKUP_TIME_LIMIT): time to record the
# hook, the artifact and the backup's end. A fifth of the soft-to-hard window when shorter.
HARD_LIMIT_MARGIN = 30.0


def hooks_deadline(settings: Settings, started: float) -> float:
    """The time.monotonic() instant past which no hook of a task that started at `started`
    runs: its hard time limit, less the margin."""
    window = settings.backup_time_limit - settings.backup_soft_time_limit
    return started + settings.backup_time_limit - min(HARD_LIMIT_MARGIN, window / 5)


@contextmanager
def hooks_around(
    fleet: Fleet,
    spec: ServiceSpec,
    *,
    backup_id: int,
    namespace: str,
    timestamp: str,
    stop_by: float | None = None,
) -> Iterator[None]:
    """Run the service's `pre` hook, then the body, then its `post` hook (always).

    A failed `pre` raises SourceError naming the hook, how it ended and its output.
    No hook runs past `stop_by` (hooks_deadline)."""
    hooks = spec.hooks
    if hooks is None:
        yield
        return
    runner = _Runner(
        fleet, spec, backup_id=backup_id, namespace=namespace, timestamp=timestamp, stop_by=stop_by
    )
    try:
        if hooks.pre:
            pre = runner.run("pre", hooks.pre)
            if not pre.ok:
                raise SourceError(pre.summary())
        yield
    finally:
        if hooks.post:
            runner.post(hooks.post)


def run_owed_post(
    fleet: Fleet,
    spec: ServiceSpec,
    *,
    backup_id: int,
    namespace: str,
    timestamp: str,
    stop_by: float | None = None,
) -> None:
    """For a service an earlier attempt stored: its `post` hook, if that attempt's worker
    was lost before `post` ended (the catalog has no `post` since its latest `pre`)."""
    if spec.hooks is None or not spec.hooks.post:
        return
    with session_scope(fleet.settings.database_url) as session:
        owed = post_owed(session, backup_id=backup_id, service=spec.name)
    if not owed:
        return
    log.info(
        "backup %s/%s: service %s was stored by an earlier attempt whose post hook did not "
        "end: it runs now",
        namespace,
        timestamp,
        spec.name,
    )
    runner = _Runner(
        fleet, spec, backup_id=backup_id, namespace=namespace, timestamp=timestamp, stop_by=stop_by
    )
    runner.post(spec.hooks.post)


class _Runner:
    """Runs one service's hooks in one backup, and records each run."""

    def __init__(
        self,
        fleet: Fleet,
        spec: ServiceSpec,
        *,
        backup_id: int,
        namespace: str,
        timestamp: str,
        stop_by: float | None,
    ) -> None:
        self.fleet, self.spec, self.backup_id = fleet, spec, backup_id
        self.namespace, self.timestamp, self.stop_by = namespace, timestamp, stop_by
        self.secrets = fleet.secrets()
        assert spec.hooks is not None
        self.timeout = spec.hooks.timeout_seconds(fleet.settings.hook_timeout_seconds)

    def post(self, argv: Sequence[str]) -> None:
        """`post` puts things back: the soft time limit does not stop it (it runs on, up to
        its timeout and `stop_by`); it is recorded, warned of if it failed, and only then
        is the soft time limit raised."""
        result = self.run("post", argv, finish_despite=(SoftTimeLimitExceeded,))
        if not result.ok:
            self.warn(result)
        if result.interrupted is not None:
            raise result.interrupted

    def run(
        self,
        hook: HookName,
        argv: Sequence[str],
        *,
        finish_despite: tuple[type[BaseException], ...] = (),
    ) -> HookResult:
        result = run_hook(
            hook,
            argv,
            env=self.spec.env or (),
            password_env=self.spec.password_env,
            secrets=self.secrets,
            timeout=self.timeout,
            stop_by=self.stop_by,
            finish_despite=finish_despite,
        )
        log.info(
            "backup %s/%s: service %s: %s hook %s ended (%s) in %.1f s; output: %s",
            self.namespace,
            self.timestamp,
            self.spec.name,
            hook,
            result.program,
            result.detail,
            result.seconds,
            result.output or "(none)",
        )
        self._record(result)
        record_system_event(
            namespace=self.namespace,
            name="BackupHook",
            params={
                "timestamp": self.timestamp,
                "service": self.spec.name,
                "hook": hook,
                "program": result.program,
                "status": "Success" if result.ok else "Failed",
                "detail": result.detail,
            },
            payload=payload_json({"output": result.output}),
            response_code=200 if result.ok else 500,
        )
        return result

    def warn(self, result: HookResult) -> None:
        """A failed `post`: a warning on the backup and an alert; the backup keeps its status."""
        summary = result.summary()
        log.warning(
            "backup %s/%s: service %s: %s", self.namespace, self.timestamp, self.spec.name, summary
        )
        warning = f"{self.spec.name}: {summary}"
        self._write(
            lambda session: add_backup_warning(session, backup_id=self.backup_id, warning=warning),
            "recording a hook's warning",
        )
        report_hook_failure(self.fleet, self.namespace, self.timestamp, self.spec.name, summary)

    def _record(self, result: HookResult) -> None:
        def record(session: Session) -> None:
            record_hook_run(
                session,
                backup_id=self.backup_id,
                service=self.spec.name,
                hook=result.hook,
                program=result.program,
                ok=result.ok,
                detail=result.detail,
                output=result.output,
                started_at=result.started_at,
                finished_at=result.finished_at,
            )

        self._write(record, "recording a hook run")

    def _write(self, change: _Change, what: str) -> None:
        try:
            patience = self.fleet.settings.catalog_retry_seconds
            write_catalog(self.fleet.settings.database_url, change, what=what, patience=patience)
        except SoftTimeLimitExceeded:  # the task is told to stop: no failure to record
            raise
        except Exception as exc:  # the record of a hook must not fail the backup
            log.warning("%s failed: %s", what, redact(reason_of(exc), self.secrets))

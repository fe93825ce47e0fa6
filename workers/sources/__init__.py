"""What is backed up and restored; `make_source` builds one from a services-file entry."""

from collections.abc import Sequence

from workers.services_config import DEFAULT_COMMAND_FORMAT, ServiceSpec
from workers.settings import Settings
from workers.sources.base import Dump, RestoreStream, Source


def make_source(spec: ServiceSpec, settings: Settings, secrets: Sequence[str] = ()) -> Source:
    """`secrets`: every secret the fleet knows, masked in the tools' messages."""
    # Imported here: each source pulls its own dependencies (psycopg, tarfile…); the
    # kinds import nothing above them, so no cycle closes.
    if spec.kind == "postgres":
        from workers.sources.postgres import PostgresSource

        assert spec.url is not None
        return PostgresSource(
            spec.url, password_env=spec.password_env, env=spec.env or (), secrets=secrets
        )
    if spec.kind == "sqlite":
        from workers.sources.sqlite import SqliteSource

        assert spec.path is not None
        return SqliteSource(spec.path, settings.backfleet_work_dir)
    if spec.kind == "command":
        from workers.sources.command import CommandSource

        assert spec.dump_command is not None and spec.restore_command is not None
        return CommandSource(
            spec.dump_command,
            spec.restore_command,
            format=spec.format or DEFAULT_COMMAND_FORMAT,
            fail_on_stderr=spec.fail_on_stderr,
            password_env=spec.password_env,
            env=spec.env or (),
            secrets=secrets,
            work_dir=settings.backfleet_work_dir,
        )
    from workers.sources.directory import DirectorySource

    assert spec.path is not None
    return DirectorySource(
        spec.path,
        direct_writes=settings.restore_direct_writes,
        direct_reads=settings.backup_direct_reads,
        special_files=spec.special_files,
    )


__all__ = ["Dump", "RestoreStream", "Source", "make_source"]

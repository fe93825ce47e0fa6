"""`backfleet backup --dry-run`: every source through the whole pipeline, nothing stored.

A service's hooks are listed, not run: a dry run changes nothing, and the
dump reads the service as it is (without what `pre` would have made)."""

import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass

from workers.fleet import Fleet
from workers.redact import redact
from workers.services_config import ServiceSpec
from workers.sources import make_source
from workers.stores.null import NullStore
from workers.transfer import crypto
from workers.transfer.parts import TransferOptions
from workers.transfer.upload import upload_artifact


@dataclass(frozen=True)
class DryRunResult:
    service: str
    source_bytes: int
    stored_bytes: int
    seconds: float
    hooks: tuple[str, ...] = ()  # "pre: incus snapshot create c1 backfleet": not run

    @property
    def throughput(self) -> float:
        """Source bytes per second."""
        return self.source_bytes / self.seconds if self.seconds > 0 else 0.0


def dry_run(fleet: Fleet, *, namespace: str, only_config: bool) -> Iterator[DryRunResult]:
    options = TransferOptions.from_settings(
        fleet.settings, crypto.Keyring.from_settings(fleet.settings)
    )
    specs = fleet.config.services_of(namespace)
    for service in fleet.config.services_for_backup(namespace, only_config=only_config):
        source = make_source(specs[service], fleet.settings, fleet.secrets())
        started = time.monotonic()
        stored = upload_artifact(
            store=NullStore(),
            key=f"{namespace}/dry-run/{service}",
            open_dump=source.dump,
            options=options,
        )
        seconds = time.monotonic() - started
        hooks = hooks_of(specs[service], fleet.secrets())
        yield DryRunResult(service, stored.source_size, stored.size, seconds, hooks)


def hooks_of(spec: ServiceSpec, secrets: list[str]) -> tuple[str, ...]:
    """The hooks a backup would run around the service, as `pre: <argv>` lines, redacted."""
    hooks = spec.hooks
    if hooks is None:
        return ()
    listed = [("pre", hooks.pre), ("post", hooks.post)]
    return tuple(f"{name}: {redact(shlex.join(argv), secrets)}" for name, argv in listed if argv)

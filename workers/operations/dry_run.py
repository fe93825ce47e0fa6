"""`backfleet backup --dry-run`: every source through the whole pipeline, nothing stored."""

import time
from collections.abc import Iterator
from dataclasses import dataclass

from workers.fleet import Fleet
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
        yield DryRunResult(service, stored.source_size, stored.size, time.monotonic() - started)

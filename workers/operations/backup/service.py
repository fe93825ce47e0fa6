"""One service of a backup: its hooks around the dump, a redelivery's stored volumes kept
or dumped again, and a directory's volumes several at once."""

import logging
from typing import cast

from workers.catalog.db import session_scope
from workers.catalog.models import SUCCESS, Backup
from workers.errors import NotFoundError
from workers.fleet import Fleet
from workers.operations.backup.artifact import ArtifactWriter, entry_from_row, volume_of
from workers.operations.hooks import hooks_around, run_owed_post
from workers.repository.manifest import ArtifactEntry
from workers.services_config import ServiceSpec
from workers.sources import make_source
from workers.transfer import crypto
from workers.transfer.budget import PartBudget
from workers.transfer.parts import StopCheck, TransferOptions
from workers.transfer.upload import DumpFactory
from workers.transfer.volumes import VolumeSource, VolumeSpan, back_up_volumes

log = logging.getLogger(__name__)


class ServiceBackups:
    """Backs up one service after another into the artifacts of one backup row."""

    def __init__(
        self, fleet: Fleet, backup_id: int, namespace: str, timestamp: str, stop_by: float
    ) -> None:
        self.fleet, self.backup_id = fleet, backup_id
        self.namespace, self.timestamp = namespace, timestamp
        self.stop_by = stop_by  # no hook runs past it (operations/hooks.py: hooks_deadline)
        self.url = fleet.settings.database_url
        self.keyring = crypto.Keyring.from_settings(fleet.settings)
        self.options = TransferOptions.from_settings(fleet.settings, self.keyring)
        self.writer = ArtifactWriter(fleet, backup_id, namespace, timestamp, self.options)

    def back_up(self, service: str) -> list[ArtifactEntry]:
        spec = self.fleet.config.services_of(self.namespace).get(service)
        if spec is None:
            raise NotFoundError(f"service {service} is no longer in the services file")
        if spec.hooks is not None and (stored := self._stored_already(service)):
            # A redelivery: nothing of this service is dumped again, so `pre` does not run
            # again; `post` does if the lost attempt's did not end (it puts things back).
            log.info(
                "backup %s/%s: service %s was stored by an earlier attempt: its pre hook "
                "does not run again",
                self.namespace,
                self.timestamp,
                service,
            )
            self._drop_volumes_after(service, len(stored))
            run_owed_post(
                self.fleet,
                spec,
                backup_id=self.backup_id,
                namespace=self.namespace,
                timestamp=self.timestamp,
                stop_by=self.stop_by,
            )
            return stored
        if spec.hooks is not None and spec.hooks.pre and self._stored_any(service):
            # `pre` runs again (a new snapshot): the volumes an earlier attempt stored were
            # read from the state its `pre` made; kept, the service would mix two points in
            # time. The whole service is dumped again from the new one.
            log.info(
                "backup %s/%s: service %s: the volumes an earlier attempt stored are dumped "
                "again after its pre hook",
                self.namespace,
                self.timestamp,
                service,
            )
            self._drop_volumes_after(service, 0)
        # `pre` before the source is built (it may make what the dump reads), `post` after
        # the dump whatever happened (workers/operations/hooks.py).
        with hooks_around(
            self.fleet,
            spec,
            backup_id=self.backup_id,
            namespace=self.namespace,
            timestamp=self.timestamp,
            stop_by=self.stop_by,
        ):
            return self._dump(spec, service)

    def _dump(self, spec: ServiceSpec, service: str) -> list[ArtifactEntry]:
        source = make_source(spec, self.fleet.settings, self.fleet.secrets())
        if not source.volumes:  # declared by the kind (sources/base.py)
            return [self.writer.store(source, service, 1, source.dump)]
        # A large directory goes in volumes, several at once, each starting after
        # the last entry of the one before, so a redelivered backup resumes at the
        # first unfinished one (workers/transfer/volumes.py).
        settings = self.fleet.settings

        def store_volume(
            volume: int,
            open_dump: DumpFactory,
            span: VolumeSpan,
            should_stop: StopCheck,
            budget: PartBudget,
        ) -> ArtifactEntry:
            return self.writer.store(
                source,
                service,
                volume,
                open_dump,
                span=span,
                should_stop=should_stop,
                budget=budget,
            )

        entries = back_up_volumes(
            cast(VolumeSource, source),
            finished=self._finished_volumes(service),
            max_bytes=settings.backup_volume_size,
            concurrency=settings.backup_volume_concurrency,
            part_concurrency=self.options.concurrency,
            store_volume=store_volume,
        )
        self._drop_volumes_after(service, len(entries))
        return entries

    def _stored_already(self, service: str) -> list[ArtifactEntry]:
        """Every artifact of the service, if an earlier attempt of this backup stored them all."""
        finished = self._finished_volumes(service)
        return finished if finished and finished[-1].source.get("final", True) else []

    def _stored_any(self, service: str) -> bool:
        """Whether an earlier attempt stored any artifact (volume) of the service."""
        with session_scope(self.url) as session:
            backup = session.get(Backup, self.backup_id)
            assert backup is not None
            return any(r.service == service and r.status == SUCCESS for r in backup.artifacts)

    def _finished_volumes(self, service: str) -> list[ArtifactEntry]:
        """The volumes a dead attempt finished that chain from the first (transfer/volumes.py)."""
        with session_scope(self.url) as session:
            backup = session.get(Backup, self.backup_id)
            assert backup is not None
            rows = sorted((r for r in backup.artifacts if r.service == service), key=volume_of)
            finished: list[ArtifactEntry] = []
            after: str | None = None
            for number, row in enumerate(rows, start=1):
                facts = row.facts or {}
                if row.volume != number or row.status != SUCCESS or row.sha256 is None:
                    break
                # A volume stored before `after` was recorded chains: volumes went one by one.
                if facts.get("after", after) != after:
                    break
                finished.append(entry_from_row(row))
                if facts.get("final", True):
                    break
                after = facts.get("last")
            return finished

    def _drop_volumes_after(self, service: str, last: int) -> None:
        """Volumes a dead attempt made beyond the last one of this walk: abort and forget."""
        with session_scope(self.url) as session:
            backup = session.get(Backup, self.backup_id)
            assert backup is not None
            for row in list(backup.artifacts):
                if row.service == service and row.volume > last:
                    if row.upload_id:
                        self.fleet.store.abort_upload(row.key, row.upload_id)
                    session.delete(row)

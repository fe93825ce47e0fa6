"""Shipping one WAL file: zstd, age when the fleet encrypts, SHA-256, the store (the
artifacts' own pipeline, workers/transfer), then its row in the catalog.

The object is written before the row, and the row names the object: a shipper killed in
between leaves an object the next shipment of the same file overwrites (same key).
"""

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from workers.catalog.db import Session, write_catalog
from workers.catalog.models import WAL_HISTORY, WAL_SEGMENT, WalSegment
from workers.catalog.wal import Recorded, record_wal_file
from workers.pitr.lsn import PARTIAL
from workers.repository.wal_layout import wal_key
from workers.sources.base import Dump
from workers.stores.base import ObjectStore
from workers.timestamps import utcnow
from workers.transfer.crypto import Keyring
from workers.transfer.parts import TransferOptions
from workers.transfer.upload import upload_artifact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WalFile:
    """One file to ship, its bytes read from the spool."""

    stem: str  # 24 hex digits, or `00000002.history`
    data: bytes
    timeline: int
    start_lsn: int
    end_lsn: int  # the end of its valid data
    partial: bool = False
    history: bool = False


@dataclass(frozen=True)
class Shipped:
    key: str
    size: int
    sha256: str
    recorded: Recorded


class Shipper:
    """Ships the WAL files of one service of one cluster."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        options: TransferOptions,
        database_url: str,
        patience: float,
        namespace: str,
        service: str,
        system_identifier: str,
    ) -> None:
        self.store, self.options = store, options
        self.url, self.patience = database_url, patience
        self.namespace, self.service = namespace, service
        self.system_identifier = system_identifier
        self.encryption = Keyring(options.identity, {}).describe_current()

    def ship(self, wal: WalFile) -> Shipped:
        name = wal.stem + (PARTIAL if wal.partial else "")
        key = wal_key(self.namespace, self.service, name, encrypted=self.encryption is not None)
        stored = upload_artifact(
            store=self.store, key=key, open_dump=lambda: _bytes(wal.data), options=self.options
        )

        def record(session: Session) -> Recorded:
            row = WalSegment(
                namespace=self.namespace,
                service=self.service,
                system_identifier=self.system_identifier,
                timeline=wal.timeline,
                segment=wal.stem,
                kind=WAL_HISTORY if wal.history else WAL_SEGMENT,
                start_lsn=wal.start_lsn,
                end_lsn=wal.end_lsn,
                partial=wal.partial,
                key=key,
                size=stored.size,
                source_size=stored.source_size,
                sha256=stored.sha256,
                encryption=stored.encryption,
                shipped_at=utcnow(),
            )
            return record_wal_file(session, row=row)

        recorded = write_catalog(self.url, record, what=f"recording {name}", patience=self.patience)
        if not recorded.kept:  # the segment is complete in the store already
            self._delete(key)
        elif recorded.replaced_key is not None:  # its partial, now that it is complete
            self._delete(recorded.replaced_key)
        if not wal.partial and not wal.history:
            self._delete_stray_partial(wal.stem, recorded.replaced_key)
        return Shipped(key, stored.size, stored.sha256, recorded)

    def _delete_stray_partial(self, stem: str, deleted: str | None) -> None:
        """A partial a killed shipper uploaded but never recorded: no row will name it."""
        key = wal_key(
            self.namespace, self.service, stem + PARTIAL, encrypted=self.encryption is not None
        )
        try:
            stray = key != deleted and self.store.exists(key)
        except Exception:
            return
        if stray:
            self._delete(key)

    def _delete(self, key: str) -> None:
        try:
            self.store.delete(key)
        except Exception as exc:  # a stray partial object costs little; the row is right
            log.warning(
                "could not delete the superseded WAL object %s: %s", key, type(exc).__name__
            )


@contextmanager
def _bytes(data: bytes) -> Iterator[Dump]:
    yield Dump(stream=io.BytesIO(data))

"""The WAL a restore to a moment replays, fetched into the scratch server's `wal/` folder
before the server starts (so no store credential ever reaches its environment: its
restore_command only copies files from there).

Which files (`wal_to_fetch`): from the segment holding the base backup's start through
the one that is provably past the target, from the catalog's rows of the continuous run
(pitr/window.py):

- the run's complete segments (any timeline: recovery picks by the timeline history);
- its newest file when it is the growing segment's partial, written under the segment's
  own name (PostgreSQL reads a segment whose valid data ends early as the end of WAL);
  an older partial is the end of a timeline a later timeline's copy of the segment holds;
- every timeline history file of the cluster;
- it stops at the segment holding the start of a later base backup that began after the
  target (its WAL was written after the target: replay stops before it, or ends there
  holding every commit up to the target); with none, the whole run.

Each object is read through the artifacts' own download path (transfer/download.py): its
size and SHA-256 checked against the catalog, decrypted, decompressed; a file is renamed
into place only once verified. A partial the streamer re-shipped meanwhile (same key,
more data) is read again from its newer row.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from workers.catalog.db import session_scope
from workers.catalog.wal import wal_file
from workers.errors import IntegrityError, NotFoundError
from workers.pitr.window import BaseBackup, WalRef, Window
from workers.repository.manifest import ArtifactEntry
from workers.sources.base import CHUNK_SIZE
from workers.stores.base import ObjectStore
from workers.transfer.crypto import Keyring
from workers.transfer.download import open_restore_stream

log = logging.getLogger(__name__)
WAL_FORMAT = "wal"  # the ArtifactEntry format of a WAL object (only named in errors)
Say = Callable[[str | None], None]
Reload = Callable[[WalRef], "WalRef | None"]  # a file's row as the catalog says it now
PARTIAL_ATTEMPTS = 5  # a partial re-shipped under the reader: read its newer object


@dataclass(frozen=True)
class WalToFetch:
    ref: WalRef
    name: str  # the file name PostgreSQL's restore_command is asked for


def wal_to_fetch(window: Window, base: BaseBackup, target: datetime) -> list[WalToFetch]:
    """What a replay from `base` to `target` needs (see the module doc), history first."""
    run = list(window.run)
    newest = max(run, key=lambda ref: (ref.end_lsn, ref.timeline)) if run else None
    later = [
        other.start_lsn
        for other in window.others
        if other.start_time > target and other.start_lsn > base.end_lsn
    ]
    stop = min(later) if later else None
    picked = [WalToFetch(ref, ref.segment) for ref in window.histories]
    for ref in run:
        if ref.end_lsn <= base.start_lsn:
            continue  # before the base backup's own WAL
        if stop is not None and ref.start_lsn > stop:
            break
        if ref.partial and ref is not newest:
            continue
        picked.append(WalToFetch(ref, ref.segment))
    return picked


def fetch_wal(
    store: ObjectStore,
    keyring: Keyring,
    files: Sequence[WalToFetch],
    into: Path,
    *,
    service: str,
    say: Say,
    reload: Reload,
) -> int:
    """Download, verify and decode each file into `into`; the stored bytes read.

    The growing segment's partial is shipped again (the same object, more data) while the
    streamer runs, and deleted once its segment is complete: when its bytes no longer
    match the row read, the row is read again (`reload`) and the newer object fetched,
    which holds all the older one did and more (replay stops at the target)."""
    total = sum(item.ref.size for item in files)
    done = 0
    for number, item in enumerate(files, 1):
        say(f"{service}: fetching WAL {number}/{len(files)} ({_mib(done)} of {_mib(total)} MiB)")
        current = item
        for attempt in range(1, PARTIAL_ATTEMPTS + 1):
            try:
                _fetch_one(store, keyring, current, into, service)
                break
            except (IntegrityError, NotFoundError):
                newer = reload(current.ref) if current.ref.partial else None
                if attempt == PARTIAL_ATTEMPTS or newer is None or newer == current.ref:
                    raise
                log.info("%s: %s was shipped again meanwhile: fetching it anew", service, item.name)
                current = WalToFetch(newer, item.name)
        done += current.ref.size
    log.info("%s: %d WAL files fetched (%d stored bytes)", service, len(files), done)
    return done


def _fetch_one(
    store: ObjectStore, keyring: Keyring, item: WalToFetch, into: Path, service: str
) -> None:
    ref = item.ref
    entry = ArtifactEntry(
        service=service,
        key=ref.key,
        format=WAL_FORMAT,
        compression="zstd",
        encryption=ref.encryption,
        size=ref.size,
        sha256=ref.sha256,
        source_size=ref.source_size,
    )
    final = into / item.name
    partial = into / f".{item.name}.fetching"  # restore_command never asks for it
    try:
        with open_restore_stream(store, entry, keyring) as stream, partial.open("wb") as out:
            while chunk := stream.read(CHUNK_SIZE):
                out.write(chunk)
            stream.verify()  # size and SHA-256 of every stored byte, before it counts
        partial.rename(final)
    finally:
        partial.unlink(missing_ok=True)


def catalog_reload(database_url: str, namespace: str, service: str) -> Reload:
    """A Reload reading a file's row again from the catalog."""

    def reload(ref: WalRef) -> WalRef | None:
        with session_scope(database_url) as session:
            row = wal_file(
                session,
                namespace=namespace,
                service=service,
                timeline=ref.timeline,
                segment=ref.segment,
            )
            return WalRef.of(row) if row is not None else None

    return reload


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f}"

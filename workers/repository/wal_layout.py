"""Where a `pitr` service's streamed WAL lives in the store, beside its backups:

    <namespace>/wal/<service>/<timeline+segment, 24 hex>.zst[.enc]          a complete segment
    <namespace>/wal/<service>/<24 hex>.partial.zst[.enc]                     the growing one
    <namespace>/wal/<service>/<timeline, 8 hex>.history.zst[.enc]            a timeline's history

Compressed (zstd) and encrypted (age) like every artifact; each object carries its
SHA-256 in the store's metadata and in the catalog (WalSegment). Code that lists
`<namespace>/` for backups (timestamp folders) skips `wal/` (WAL_DIR), as it skips
`user-events-audit/`.
"""

WAL_DIR = "wal"
PARTIAL_SUFFIX = ".partial"


def wal_prefix(namespace: str, service: str | None = None) -> str:
    """`<namespace>/wal/`, or one service's `<namespace>/wal/<service>/`."""
    base = f"{namespace}/{WAL_DIR}/"
    return base if service is None else f"{base}{service}/"


def wal_key(namespace: str, service: str, file_name: str, *, encrypted: bool) -> str:
    """The object of one WAL file as pg_receivewal names it (`…0003`, `…0003.partial`,
    `00000002.history`)."""
    return f"{wal_prefix(namespace, service)}{file_name}.zst" + (".enc" if encrypted else "")

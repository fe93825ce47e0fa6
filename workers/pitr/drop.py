"""`backfleet wal drop-slot`: remove a service's replication slot cleanly, so the server
may recycle the WAL it held (a service that leaves PITR, or leaves the fleet).

Refused while a streamer holds the service's lock (it would make the slot again, and
count a gap), unless forced. The catalog's word on the stream says the slot is gone.
"""

from dataclasses import dataclass

import redis

from workers.catalog.db import session_scope
from workers.catalog.wal import save_stream
from workers.errors import ConflictError, InvalidRequestError
from workers.fleet import Fleet
from workers.monitoring.redis_client import CHECK, redis_client
from workers.pitr.lock import lock_key
from workers.pitr.server import Server
from workers.pitr.slot import drop_slot, slot_name

DROPPED = "dropped"  # WalStream.wal_status once the slot is dropped


@dataclass(frozen=True)
class SlotDropped:
    namespace: str
    service: str
    slot: str
    host: str
    existed: bool  # False: there was no such slot on the server


def streaming_holder(client: redis.Redis, namespace: str, service: str) -> str | None:
    """Who streams the service now (`host pid N`), or None."""
    value = client.get(lock_key(namespace, service))
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return str(value).split("|", 1)[0] if value else None


def drop_service_slot(fleet: Fleet, namespace: str, service: str, *, force: bool) -> SlotDropped:
    services = fleet.config.namespaces.get(namespace)
    if services is None or service not in services:
        raise InvalidRequestError(f"namespace {namespace} has no service {service}")
    spec = services[service]
    if spec.kind != "postgres":
        raise InvalidRequestError(f"service {service} is a {spec.kind} service, not postgres")
    client = redis_client(fleet.settings.locks_url, CHECK)
    try:
        holder = streaming_holder(client, namespace, service)
    finally:
        client.close()
    if holder is not None and not force:
        raise ConflictError(
            f"the WAL of {namespace}/{service} is being streamed by {holder}: set `pitr = "
            "false` and restart `backfleet wal` first (or --force: the streamer makes the "
            "slot again and records a gap)"
        )
    slot = slot_name(namespace, service)
    server = Server(spec, fleet.secrets())
    with server.connect() as conn:
        existed = drop_slot(conn, slot)
    with session_scope(fleet.settings.database_url) as session:
        save_stream(
            session,
            namespace=namespace,
            service=service,
            slot=slot,
            wal_status=DROPPED,
            retained_bytes=0,
        )
    return SlotDropped(namespace, service, slot, server.host, existed)

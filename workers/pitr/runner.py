"""`backfleet wal`: a streamer thread for every `pitr` service of every configured
namespace, until asked to stop. With no `pitr` service it waits all the same (so `backfleet
up`, compose and Kubernetes can run it whatever the services file says)."""

import logging
import tempfile
import threading
from pathlib import Path

from workers.fleet import Fleet
from workers.monitoring.redis_client import LOCKS, redis_client
from workers.monitoring.wal import pitr_services
from workers.pitr.streamer import ServiceStreamer
from workers.settings import Settings

log = logging.getLogger(__name__)
JOIN_TIMEOUT = 60.0


def spool_root(settings: Settings) -> Path:
    if settings.wal_spool_dir is not None:
        return settings.wal_spool_dir
    return (settings.backfleet_work_dir or Path(tempfile.gettempdir())) / "backfleet-wal"


def run_streamers(fleet: Fleet, stop: threading.Event) -> None:
    """Stream every `pitr` service (each as a standby until its lock is free) until `stop`."""
    client = redis_client(fleet.settings.locks_url, LOCKS)
    root = spool_root(fleet.settings)
    threads = []
    for namespace, service in pitr_services(fleet):
        spec = fleet.config.services_of(namespace)[service]
        streamer = ServiceStreamer(
            fleet, namespace, spec, client=client, spool_root=root, stop=stop
        )
        thread = threading.Thread(target=streamer.run, name=f"wal-{namespace}/{service}")
        thread.start()
        threads.append(thread)
    if not threads:
        log.info("no pitr service is configured: nothing to stream")
    else:
        log.info("WAL streamers for %d pitr service(s), spooling in %s", len(threads), root)
    stop.wait()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    client.close()

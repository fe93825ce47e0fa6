"""`backfleet wal`: a streamer thread for every `pitr` service of every configured
namespace, until asked to stop. With no `pitr` service it waits all the same (so `backfleet
up`, compose and Kubernetes can run it whatever the services file says).

Alerts never hold a stream: their webhook messages go out from a thread of their own
(tried ALERT_WEBHOOK_ATTEMPTS times; what is still owed, the staleness check re-sends),
and another thread judges the wal.lag / wal.retained / wal.gap alerts every
ALERT_EVERY seconds.
"""

import logging
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from workers.fleet import Fleet
from workers.monitoring.alerts import Alerter, deliver_in_background
from workers.monitoring.redis_client import LOCKS, redis_client
from workers.monitoring.wal import check_wal, pitr_services
from workers.pitr.streamer import ServiceStreamer
from workers.settings import Settings

log = logging.getLogger(__name__)
JOIN_TIMEOUT = 60.0
ALERT_EVERY = 30.0  # seconds between two judgements of the wal.* alerts


def spool_root(settings: Settings) -> Path:
    if settings.wal_spool_dir is not None:
        return settings.wal_spool_dir
    return (settings.backfleet_work_dir or Path(tempfile.gettempdir())) / "backfleet-wal"


def run_streamers(fleet: Fleet, stop: threading.Event) -> None:
    """Stream every `pitr` service (each as a standby until its lock is free) until `stop`."""
    client = redis_client(fleet.settings.locks_url, LOCKS)
    root = spool_root(fleet.settings)
    sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-alert-delivery")
    alerter = Alerter(fleet.settings, fleet.secrets())
    deliver_in_background(lambda alert_id, message: _send(sender, alerter, alert_id, message))
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
        judge = threading.Thread(target=_judge, args=(fleet, stop), name="wal-alerts", daemon=True)
        judge.start()
    stop.wait()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    deliver_in_background(None)
    sender.shutdown(wait=False, cancel_futures=True)
    client.close()


def _judge(fleet: Fleet, stop: threading.Event) -> None:
    while not stop.wait(ALERT_EVERY):
        check_wal(fleet)  # never raises


def _send(sender: ThreadPoolExecutor, alerter: Alerter, alert_id: int, message: str) -> None:
    sender.submit(_deliver, alerter, alert_id, message)


def _deliver(alerter: Alerter, alert_id: int, message: str) -> None:
    """One message, its tries spaced as the alerter's policy says."""
    try:
        for attempt in range(1, alerter.policy.attempts + 1):
            if alerter.deliver_once(alert_id, message):
                return
            time.sleep(alerter.policy.delay(attempt))
    except Exception:
        log.exception("could not deliver alert %s", alert_id)

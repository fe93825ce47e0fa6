"""One flush of the user events, as a worker runs it: `python -m bench.audit_flush_runner`.

Settings come from the environment (DATABASE_URL, OBJECT_STORE_LOCATION_TYPE=s3,
AWS_*, UEVENTS_*); prints one JSON line: events, batches, objects, peak RSS.
"""

import json
import time

from workers.audit.jobs import ship_limits
from workers.audit.ship import flush_user_events
from workers.settings import get_settings
from workers.stores import make_store


def peak_rss() -> int:
    """VmHWM: this process's own peak (ru_maxrss would count the parent's pages before exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    settings = get_settings()
    started = time.perf_counter()
    result = flush_user_events(
        store=make_store(settings),
        database_url=settings.database_url,
        limits=ship_limits(settings),
    )
    print(
        json.dumps(
            {
                "events": result.events,
                "batches": result.batches,
                "objects": len(result.objects),
                "seconds": time.perf_counter() - started,
                "peak_rss": peak_rss(),
            }
        )
    )


if __name__ == "__main__":
    main()

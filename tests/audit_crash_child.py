"""A flush that SIGKILLs itself at a hook point: run by tests/integration/test_audit_crash.py.

argv[1] is JSON: {"settings": {...}, "url": catalog URL, "hook": "store_confirmed" or
"commit_shipped", "at": which call (1-based), "batch": events per batch, "file": bytes}.
For store_confirmed the kill comes right after that object is stored and confirmed; for
commit_shipped, right before the watermark moves (every object of the batch is stored).
"""

import json
import os
import signal
import sys
from typing import Any

from workers.audit import objects, ship
from workers.settings import Settings
from workers.stores import make_store


def main() -> None:
    spec = json.loads(sys.argv[1])
    hook, at = spec["hook"], int(spec["at"])
    module = objects if hook == "store_confirmed" else ship
    original = getattr(module, hook)
    calls = 0

    def dying(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if hook == "commit_shipped" and calls == at:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if hook == "store_confirmed" and calls == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, hook, dying)
    ship.flush_user_events(
        store=make_store(Settings(**spec["settings"])),
        database_url=spec["url"],
        limits=ship.ShipLimits(batch_events=spec["batch"], file_bytes=spec["file"]),
    )


if __name__ == "__main__":
    main()

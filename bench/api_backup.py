"""A script's on-demand backup through the HTTP API: POST, then poll until it ends.

    BENCH_API_KEY=… python -I -S bench/api_backup.py http://127.0.0.1:PORT

What a user's script (or curl in a loop) does against a running fleet: `POST
/athena/api/v1/ondemandbackup`, read the timestamp from the 202, then `GET
/athena/api/v1/backup/{timestamp}` every POLL_S until the status is Success
(exit 0) or Failed (exit 1). Standard library only, so `python -I -S` starts it
in ~20 ms; the key comes from the environment, never the command line.
"""

import json
import os
import re
import sys
import time
import urllib.request

POLL_S = 0.1
TIMEOUT_S = 3600.0


def call(base: str, method: str, path: str, body: bytes | None = None) -> dict[str, object]:
    request = urllib.request.Request(base + path, data=body, method=method)
    request.add_header("Authorization", os.environ["BENCH_API_KEY"])
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, object] = json.loads(response.read())
        return answer


def main(base: str) -> int:
    accepted = call(base, "POST", "/athena/api/v1/ondemandbackup", b"{}")
    found = re.search(r"\d{4}-\d\d-\d\dt\d\d-\d\d-\d\d", str(accepted.get("message", "")))
    if found is None:
        print(f"no timestamp in {accepted}", file=sys.stderr)
        return 2
    timestamp = found.group(0)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        status = call(base, "GET", f"/athena/api/v1/backup/{timestamp}").get("status")
        if status in ("Success", "Failed"):
            print(f"backup {timestamp} {status}")
            return 0 if status == "Success" else 1
        time.sleep(POLL_S)
    print(f"backup {timestamp} did not end within {TIMEOUT_S:.0f} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""Verification tasks (queue `verify`): tasks.verify.verify_backups, tasks.verify.test_restore."""

from typing import Any

from tasks.app import app
from workers.fleet import current_fleet
from workers.operations.restore_test import run_restore_tests
from workers.operations.verify import verify_backups as perform_verify
from workers.operations.wal_verify import verify_wal
from workers.queues import TEST_RESTORE, VERIFY_BACKUPS


@app.task(name=VERIFY_BACKUPS)
def verify_backups(namespace: str | None = None, timestamp: str | None = None) -> dict[str, Any]:
    fleet = current_fleet()
    results = perform_verify(fleet, namespace=namespace, timestamp=timestamp)
    # A sample of each pitr service's WAL too (WAL_VERIFY_SAMPLE), unless one backup was asked.
    wal = [] if timestamp else verify_wal(fleet, namespace=namespace)
    return {
        "verified": len(results),
        "failed": [f"{r.namespace}/{r.timestamp} ({r.store})" for r in results if r.error],
        "walVerified": sum(r.files for r in wal),
        "walFailed": [f"{r.namespace}/{r.service}" for r in wal if r.status != "Success"],
    }


@app.task(name=TEST_RESTORE)
def test_restore(namespace: str | None = None, timestamp: str | None = None) -> dict[str, Any]:
    results = run_restore_tests(current_fleet(), namespace=namespace, timestamp=timestamp)
    return {
        f"{r.namespace}/{r.timestamp}": {
            "status": r.status,
            "tested": r.tested,
            "error": r.error,
            "seconds": {d.service: round(d.seconds, 3) for d in r.drills},
        }
        for r in results
    }

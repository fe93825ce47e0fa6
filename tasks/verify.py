"""Verification tasks (queue `verify`): tasks.verify.verify_backups, tasks.verify.test_restore."""

from typing import Any

from tasks.app import app
from workers.fleet import current_fleet
from workers.operations.restore_test import run_restore_tests
from workers.operations.verify import verify_backups as perform_verify
from workers.queues import TEST_RESTORE, VERIFY_BACKUPS


@app.task(name=VERIFY_BACKUPS)
def verify_backups(namespace: str | None = None, timestamp: str | None = None) -> dict[str, Any]:
    results = perform_verify(current_fleet(), namespace=namespace, timestamp=timestamp)
    return {
        "verified": len(results),
        "failed": [f"{r.namespace}/{r.timestamp} ({r.store})" for r in results if r.error],
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

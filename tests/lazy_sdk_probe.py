"""Run one backup as a worker would, from the environment, then print the SDKs loaded.

`python -m tests.lazy_sdk_probe <services file>`: the settings come from the environment
(OBJECT_STORE_LOCATION_TYPE…); prints a JSON list of the store SDK modules in sys.modules.
Run in a fresh process by tests/unit/test_lazy_sdks.py and its S3 twin.
"""

import json
import sys

import tasks.app  # noqa: F401  (what a worker loads: the app and its tasks)
from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.fleet import current_fleet
from workers.operations.backup import run_backup

SDKS = ("boto3", "botocore", "azure.storage.blob", "azure.core")


def main() -> None:
    fleet = current_fleet()
    upgrade_catalog(fleet.settings.database_url)
    fleet.store.init()
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.create_backup(
            session, namespace="app", services=["files"], only_config=False, trigger="test"
        )
        timestamp = backup.timestamp
    outcome = run_backup(fleet, namespace="app", timestamp=timestamp)
    if outcome.status != "Success":
        sys.exit(f"backup failed: {outcome.error}")
    print(json.dumps(sorted(name for name in SDKS if name in sys.modules)))


if __name__ == "__main__":
    main()

"""A flush killed (SIGKILL) between upload and commit loses no event and ships none twice.

Real servers: `rclone serve s3` and PostgreSQL. The flush runs in a child process
that kills itself at a hook point; the next flush, in this process, must finish
the job with every event in the store exactly once.
"""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.audit_events import DAY_MS, T0, insert, make_events, once_each, shipped_counts
from tests.plugins.object_stores import S3Server
from workers.audit import catalog
from workers.audit.ship import ShipLimits, flush_user_events
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.stores.s3 import S3Store

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]
REPO = Path(__file__).resolve().parents[2]
BATCH, FILE_BYTES = 300, 16 * 1024
STEP_MS = DAY_MS // 500


def run_dying_flush(server: S3Server, bucket: str, url: str, hook: str, at: int) -> int:
    settings = {
        "object_store_location_type": "s3",
        "aws_s3_bucket_name": bucket,
        "aws_s3_endpoint_url": server.endpoint,
        "aws_s3_addressing_style": "path",
        "aws_access_key": server.access_key,
        "aws_secret_key": server.secret_key,
    }
    spec = {"settings": settings, "url": url, "hook": hook, "at": at}
    spec |= {"batch": BATCH, "file": FILE_BYTES}
    child = subprocess.run(
        [sys.executable, "-m", "tests.audit_crash_child", json.dumps(spec)],
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    return child.returncode


def state(url: str) -> tuple[int, int | None, int]:
    with session_scope(url) as session:
        row = catalog.shipping_state(session, namespace="app")
        return row.shipped_through, row.pending_through, catalog.unshipped_event_count(session)


@pytest.mark.parametrize(
    ("hook", "at"),
    [
        ("commit_shipped", 2),  # batch 2 is stored and confirmed, its commit never happens
        ("store_confirmed", 5),  # mid-batch: some objects of the batch are stored, not all
        ("commit_shipped", 4),  # the last, partial batch: new events must not join it on redo
    ],
)
def test_a_flush_killed_between_upload_and_commit(
    s3_server: S3Server, s3_bucket: str, pg_database: str, hook: str, at: int
) -> None:
    upgrade_catalog(pg_database)
    try:
        # 1000 events over 2 days: 4 batches of at most 300, several objects each.
        insert(pg_database, make_events(1000, step_ms=STEP_MS))
        store = S3Store.from_settings(s3_server.make_settings(s3_bucket))

        assert run_dying_flush(s3_server, s3_bucket, pg_database, hook, at) == -signal.SIGKILL

        shipped_through, pending, waiting = state(pg_database)
        assert pending is not None and pending > shipped_through  # the batch it died in
        assert waiting == 1000 - shipped_through  # nothing past the watermark counts as shipped
        already = sum(shipped_counts(store).values())
        assert already > 0  # the kill came after an upload: the store holds objects
        assert max(shipped_counts(store).values()) == 1

        # Events keep arriving, on the same date right after the last ones (so they would
        # join its last object if the dead batch were not redone exactly as it was).
        last_created = T0 + 999 * STEP_MS
        insert(pg_database, make_events(50, start=last_created + 1000, step_ms=1, tag="after"))
        result = flush_user_events(
            store=store,
            database_url=pg_database,
            limits=ShipLimits(batch_events=BATCH, file_bytes=FILE_BYTES),
        )
        assert result.events == 1050 - shipped_through

        assert shipped_counts(store) == once_each(1000) | once_each(50, tag="after")
        assert state(pg_database) == (1050, None, 0)
    finally:
        dispose_engines()

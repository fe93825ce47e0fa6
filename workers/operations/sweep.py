"""The stale-upload sweep: abort multipart uploads nobody will finish.

An upload older than STALE_UPLOAD_AGE is aborted unless the catalog says it
belongs to an artifact of a backup that is still Running (that one may yet be
resumed by a redelivered task). Catalog rows that pointed at an aborted
upload forget it, so a later resume does not try it.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.fleet import Fleet
from workers.timestamps import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    aborted: list[str]
    kept: list[str]


def abort_stale_uploads(fleet: Fleet, *, dry_run: bool = False) -> SweepResult:
    cutoff = utcnow() - timedelta(seconds=fleet.settings.stale_upload_age)
    url = fleet.settings.database_url
    with session_scope(url) as session:
        running = queries.running_upload_ids(session)
    aborted, kept = [], []
    for upload in fleet.store.list_uploads(""):
        young = upload.started is not None and upload.started > cutoff
        if young or upload.upload_id in running:
            kept.append(upload.key)
            continue
        aborted.append(upload.key)
        if dry_run:
            continue
        log.info("aborting stale upload of %s (started %s)", upload.key, upload.started)
        fleet.store.abort_upload(upload.key, upload.upload_id)
        with session_scope(url) as session:
            for row in queries.artifacts_of_upload(session, upload_id=upload.upload_id):
                row.upload_id = None
    return SweepResult(aborted=aborted, kept=kept)

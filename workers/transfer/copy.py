"""One stored object into another store, in parts, its SHA-256 checked on the way."""

import hashlib
import logging

from workers.errors import IntegrityError
from workers.repository.manifest import ArtifactEntry
from workers.retry import RetryPolicy, call_with_retries
from workers.sources.base import CHUNK_SIZE
from workers.stores.base import ObjectStore, UploadedPart
from workers.transfer.parts import part_size_for

log = logging.getLogger(__name__)


def copy_artifact(
    source: ObjectStore,
    target: ObjectStore,
    entry: ArtifactEntry,
    *,
    part_size: int,
    policy: RetryPolicy,
) -> None:
    """Stream one object across in parts; IntegrityError if the source is not what it should be."""
    key = entry.key
    upload_id = call_with_retries(
        lambda: target.create_upload(key), policy=policy, what=f"start of copy of {key}"
    )
    try:  # the abort is registered now: every failure below cleans up
        parts: list[UploadedPart] = []
        digest, pending = hashlib.sha256(), bytearray()

        def send(data: bytes) -> None:
            number = len(parts) + 1
            parts.append(
                call_with_retries(
                    lambda: target.upload_part(key, upload_id, number, data),
                    policy=policy,
                    what=f"copy of part {number} of {key}",
                )
            )

        with source.open_read(key) as raw:
            while chunk := raw.read(CHUNK_SIZE):
                digest.update(chunk)
                pending += chunk
                while len(pending) >= (size := part_size_for(len(parts) + 1, part_size, target)):
                    send(bytes(pending[:size]))
                    del pending[:size]
        if pending or not parts:
            send(bytes(pending))
        if digest.hexdigest() != entry.sha256:
            raise IntegrityError(f"{key} in the primary store does not match its SHA-256")
        call_with_retries(
            lambda: target.complete_upload(key, upload_id, parts, sha256=entry.sha256),
            policy=policy,
            what=f"completion of copy of {key}",
        )
    except BaseException:
        try:
            target.abort_upload(key, upload_id)
        except Exception:
            log.exception("could not abort the copy of %s; the stale-upload sweep will", key)
        raise

"""AWS S3 and S3-compatible servers (MinIO, SeaweedFS, Ceph, rclone) through boto3.

There is one retry layer, workers.retry: botocore's own retries are off. The
pipeline retries each upload_part; this store retries its other calls. Every
SDK error becomes a TransientError or a PermanentError whose message names the
setting to fix and never carries a secret.

One job a module, each importing only those above it in this list:

    config        S3Config: the settings the store reads
    errors        an SDK failure as a Backfleet error (s3_error)
    write_params  what a write carries: checksum, encryption, Object Lock retention
    client        building the boto3 client (endpoint, addressing, timeouts, keys)
    connection    the client per process, and calling it (retried or once)
    digests       x-amz-meta-sha256, and copying an object onto itself (the routine moves reuse)
    multipart     multipart uploads: create, parts, complete, abort, resume, list
    tiers         storage classes: moving colder, RestoreObject, Object Lock extension
    store         S3Store: capabilities, whole objects, the bucket

Importing this package imports boto3: the registry (stores.STORES) does so only when
S3 is the chosen store.
"""

from workers.stores.s3.config import S3Config
from workers.stores.s3.errors import DAMAGED_IN_TRANSIT, TRANSIENT_CODES, TRANSIENT_STATUS, s3_error
from workers.stores.s3.multipart import part_mismatches
from workers.stores.s3.store import S3Store
from workers.stores.s3.write_params import CHECKSUM_FIELDS, FLEXIBLE_CHECKSUMS, integrity_params

__all__ = [
    "CHECKSUM_FIELDS",
    "DAMAGED_IN_TRANSIT",
    "FLEXIBLE_CHECKSUMS",
    "TRANSIENT_CODES",
    "TRANSIENT_STATUS",
    "S3Config",
    "S3Store",
    "integrity_params",
    "part_mismatches",
    "s3_error",
]

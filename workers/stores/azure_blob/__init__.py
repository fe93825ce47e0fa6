"""Azure Blob Storage (and Azurite) through azure-storage-blob, as block blobs.

An upload is a set of staged blocks committed at once (multipart.py tells how, and
how an upload is aborted). There is one retry layer, workers.retry: the SDK's retry
policy is off. Every SDK error becomes a TransientError or a PermanentError whose
message names the setting to fix and never carries a secret.

One job a module, each importing only those above it in this list:

    config        AzureConfig: the settings the store reads
    errors        an SDK failure as a Backfleet error (azure_error)
    block_ids     naming an upload's blocks; checking staged blocks against parts
    client        building the BlobServiceClient (credentials, timeouts, no retries)
    connection    the client per process, calling it, block lists and listings
    multipart     uploads as staged blocks: stage, commit, abort, resume, list
    tiers         access tiers: moving colder, rehydrating an Archive blob
    store         AzureBlobStore: capabilities, whole objects, the container

Importing this package imports the Azure SDK: the registry (stores.STORES) does so only
when Azure is the chosen store.
"""

from workers.stores.azure_blob.block_ids import (
    BLOCK_ID,
    block_id,
    block_mismatches,
    parse_block_id,
    wanted_blocks,
)
from workers.stores.azure_blob.client import CHUNK
from workers.stores.azure_blob.config import AzureConfig
from workers.stores.azure_blob.errors import (
    AZURITE_MD5_MISMATCH,
    DAMAGED_IN_TRANSIT,
    TRANSIENT_CODES,
    TRANSIENT_STATUS,
    azure_error,
)
from workers.stores.azure_blob.store import AzureBlobStore

__all__ = [
    "AZURITE_MD5_MISMATCH",
    "BLOCK_ID",
    "CHUNK",
    "DAMAGED_IN_TRANSIT",
    "TRANSIENT_CODES",
    "TRANSIENT_STATUS",
    "AzureBlobStore",
    "AzureConfig",
    "azure_error",
    "block_id",
    "block_mismatches",
    "parse_block_id",
    "wanted_blocks",
]

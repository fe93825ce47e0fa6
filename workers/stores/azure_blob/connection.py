"""Talking to the container: the client (made on first use, again after a fork), each call
through it (failures mapped by errors.py, retried by workers.retry), and the reads both
the uploads and the whole-object operations need: block lists, properties, listings.
"""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient

from workers.errors import BackfleetError, NotFoundError
from workers.retry import RetryPolicy
from workers.stores.azure_blob.client import make_service_client
from workers.stores.azure_blob.config import AzureConfig
from workers.stores.azure_blob.errors import azure_error
from workers.stores.base import ObjectInfo
from workers.stores.per_process import PerProcess
from workers.stores.sdk import call_once, call_retried

T = TypeVar("T")


class AzureConnection:
    """What the block uploads and whole-object operations share (AzureBlobStore is built on it)."""

    def __init__(self, config: AzureConfig, *, policy: RetryPolicy | None = None) -> None:
        self.config = config
        self.policy = policy or RetryPolicy()
        self._service: PerProcess[BlobServiceClient] = PerProcess(
            lambda: make_service_client(self.config)
        )

    def _client(self) -> BlobServiceClient:
        return self._service.get()

    def warm_up(self) -> None:
        self._client()

    def _container(self) -> ContainerClient:
        return self._client().get_container_client(self.config.container)

    def _blob(self, key: str) -> BlobClient:
        return self._container().get_blob_client(key)

    # --- calling the SDK ---
    def _once(self, what: str, operation: Callable[[], T]) -> T:
        return call_once(what, operation, self._map_error)

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        return call_retried(what, operation, self._map_error, self.policy)

    def _map_error(self, exc: BaseException, what: str) -> BackfleetError | None:
        return azure_error(exc, what=what, config=self.config)

    def _where(self, key: str) -> str:
        return f"{self.config.container}/{key}"

    # --- one blob ---
    def _blocks(self, key: str) -> tuple[list[tuple[str, int]], dict[str, int]] | None:
        """The blob's committed blocks in order and its uncommitted ones; None if no blob."""
        blob = self._blob(key)
        try:
            committed, uncommitted = self._call(
                f"block list of {self._where(key)}", lambda: blob.get_block_list("all")
            )
        except NotFoundError:
            return None
        return (
            [(str(block.id), int(block.size)) for block in committed],
            {str(block.id): int(block.size) for block in uncommitted},
        )

    def _uncommitted(self, key: str) -> dict[str, int] | None:
        blocks = self._blocks(key)
        return None if blocks is None else blocks[1]

    def _committed(self, key: str) -> bool:
        blob = self._blob(key)
        try:
            self._call(f"check of {self._where(key)}", blob.get_blob_properties)
        except NotFoundError:
            return False
        return True

    # --- listings ---
    def _pages(self, what: str, open_pages: Callable[[str | None], Any]) -> Iterator[Any]:
        """Every item of a paged listing, each page fetched (and retried) on its own."""
        token: str | None = None
        while True:

            def fetch(token: str | None = token) -> tuple[list[Any], str | None]:
                pages = open_pages(token)
                return list(next(pages, [])), pages.continuation_token

            items, token = self._call(what, fetch)
            yield from items
            if not token:
                return

    def _objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every committed blob whose name starts with `prefix`, in name order."""
        container = self._container()
        for item in self._pages(
            f"list of {self._where(prefix)}",
            lambda token: container.list_blobs(name_starts_with=prefix).by_page(
                continuation_token=token
            ),
        ):
            modified = item.last_modified
            yield ObjectInfo(
                key=str(item.name),
                size=int(item.size),
                modified=modified.astimezone(UTC) if isinstance(modified, datetime) else None,
            )

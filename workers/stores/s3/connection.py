"""Talking to the bucket: the client (made on first use, again after a fork) and each
call through it, its failures mapped by errors.py and retried by workers.retry.

The pipeline retries each upload_part itself, so that call goes through `_once`;
every other call goes through `_call`, which retries.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from workers.errors import BackfleetError, NotFoundError
from workers.retry import RetryPolicy
from workers.stores.per_process import PerProcess
from workers.stores.s3.client import make_client
from workers.stores.s3.config import S3Config
from workers.stores.s3.errors import s3_error
from workers.stores.sdk import call_once, call_retried

T = TypeVar("T")


class S3Connection:
    """What the multipart and whole-object operations share (S3Store is built on it)."""

    def __init__(
        self,
        config: S3Config,
        *,
        policy: RetryPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._s3: PerProcess[Any] = PerProcess(lambda: make_client(self.config))

    def _client(self) -> Any:
        return self._s3.get()

    def warm_up(self) -> None:
        self._client()

    # --- calling the SDK ---
    def _once(self, what: str, operation: Callable[[], T]) -> T:
        return call_once(what, operation, self._map_error)

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        return call_retried(what, operation, self._map_error, self.policy)

    def _map_error(self, exc: BaseException, what: str) -> BackfleetError | None:
        return s3_error(exc, what=what, config=self.config)

    def _where(self, key: str) -> str:
        return f"s3://{self.config.bucket}/{key}"

    # --- one object's metadata (completing an upload checks it too) ---
    def _head(self, key: str) -> dict[str, Any] | None:
        client = self._client()
        try:
            return dict(
                self._call(
                    f"check of {self._where(key)}",
                    lambda: client.head_object(Bucket=self.config.bucket, Key=key),
                )
            )
        except NotFoundError:
            return None

    def _holds(self, key: str, size: int) -> bool:
        head = self._head(key)
        return head is not None and int(head.get("ContentLength", -1)) == size

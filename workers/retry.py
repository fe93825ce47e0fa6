"""Retrying transient failures: exponential backoff with full jitter, bounded.

Only TransientError is retried; a PermanentError (bad credentials, a missing
bucket) fails at once. The clock and the random source are injectable so the
behaviour is tested without waiting.
"""

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from workers.errors import TransientError
from workers.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetryPolicy":
        return cls(
            attempts=settings.backup_retry_attempts,
            base_delay=settings.backup_retry_base_delay,
            max_delay=settings.backup_retry_max_delay,
        )

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): full jitter."""
        ceiling: float = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling * rng()


def call_with_retries(
    operation: Callable[[], T],
    *,
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Run `operation`, retrying TransientError up to `policy.attempts` times in all."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return operation()
        except TransientError as exc:
            if attempt >= policy.attempts:
                raise TransientError(f"{what} failed {attempt} times; last: {exc}") from exc
            pause = policy.delay(attempt, rng)
            log.warning(
                "%s failed (attempt %d of %d), retrying in %.1f s: %s",
                what,
                attempt,
                policy.attempts,
                pause,
                exc,
            )
            sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover

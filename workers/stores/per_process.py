"""An SDK client made on first use and again in every new process (after a fork)."""

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """Holds one value per process: a forked worker never shares its parent's client."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._value: T | None = None
        self._pid = 0

    @property
    def made(self) -> bool:
        """Whether this process has made its value yet (clients are made on first use)."""
        return self._value is not None and self._pid == os.getpid()

    def get(self) -> T:
        with self._lock:
            if self._value is None or self._pid != os.getpid():
                self._value, self._pid = self._factory(), os.getpid()
            return self._value

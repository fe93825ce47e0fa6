"""Parts in flight and their buffers, shared by the artifacts of a backup that upload at once.

A directory's volumes upload side by side (BACKUP_VOLUME_CONCURRENCY), and share
one budget, so memory stays what one artifact takes: at most `concurrency`
parts in flight in all, and a part buffer whose upload is over goes back to
one pool, from which whichever artifact fills a part next takes it.
"""

import threading

# A thread that waits does so in slices this long: between two, the soft time limit of a
# one-process worker (tasks/time_limits.py), raised in the task's thread, can land.
WAKE_EVERY = 0.5


class PartBudget:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._slots = threading.Semaphore(concurrency)
        self._lock = threading.Lock()
        self._spares: list[bytearray] = []

    def take_slot(self, *, wait: bool) -> bool:
        """A place for one more part in flight; False at once when none is free and not `wait`."""
        if not wait:
            return self._slots.acquire(blocking=False)
        while not self._slots.acquire(timeout=WAKE_EVERY):
            pass
        return True

    def give_slot(self) -> None:
        self._slots.release()

    def buffer(self, size: int) -> bytearray:
        """A spare buffer of `size` bytes, else a new one (the kernel maps and zeroes it)."""
        with self._lock:
            for index, spare in enumerate(self._spares):
                if len(spare) == size:
                    return self._spares.pop(index)
            self._spares.clear()  # parts grew (or a last, shorter part): these fit no more parts
        return bytearray(size)

    def recycle(self, buffer: bytearray) -> None:
        """A buffer whose part is sent (or was not needed); kept for the next part."""
        with self._lock:
            if len(self._spares) < self.concurrency:  # more would only sit there
                self._spares.append(buffer)

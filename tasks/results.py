"""Hearing that a task ended from Celery's Redis result backend, without Celery: what
`backfleet backup --wait` blocks on between two looks at the catalog.

A worker stores each state of a task under `celery-task-meta-<id>` and publishes it on
the channel of the same name in one MULTI (celery.backends.redis `_set`). So a waiter
that subscribes first and then reads the key misses no end: either the state was stored
before the read, or it is published after the subscription. The catalog stays the truth;
this only says when to look.
"""

import json
import logging
import time

from redis.client import PubSub

from tasks.broker import READY_STATES, RESULT_KEY_PREFIX
from workers.monitoring.redis_client import CHECK, redis_client

log = logging.getLogger(__name__)


class TaskEnd:
    """A TaskWaiter (workers/cli/progress.py): `(task id, seconds) -> ended?`, blocking
    until the task has ended or the time is up. A result backend that cannot be asked
    costs the caller its seconds, not a busy loop, and the caller polls the catalog."""

    def __init__(self, results_url: str) -> None:
        self.results_url = results_url
        self.subscribed: tuple[str, PubSub] | None = None

    def __call__(self, task_id: str, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        try:
            if self._subscribe(task_id):
                return True
            assert self.subscribed is not None
            pubsub = self.subscribed[1]
            while (left := deadline - time.monotonic()) > 0:
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
                if message is not None and _ready(message.get("data")):
                    return True
            return False
        except Exception as exc:  # the backend down is no reason to stop waiting
            log.debug("the result backend did not answer for task %s: %s", task_id, exc)
            self.close()
            time.sleep(max(0.0, deadline - time.monotonic()))
            return False

    def _subscribe(self, task_id: str) -> bool:
        """Subscribe to the task's channel (once); True if its stored state is final."""
        key = RESULT_KEY_PREFIX + task_id
        if self.subscribed is not None and self.subscribed[0] == task_id:
            return False
        self.close()
        client = redis_client(self.results_url, CHECK)
        pubsub = client.pubsub()
        pubsub.subscribe(key)
        self.subscribed = (task_id, pubsub)
        return _ready(client.get(key))

    def close(self) -> None:
        if self.subscribed is not None:
            subscribed, self.subscribed = self.subscribed, None
            subscribed[1].close()


def _ready(stored: object) -> bool:
    """Whether a stored or published result (Celery's JSON) is in a final state."""
    if not isinstance(stored, bytes | str):
        return False
    try:
        meta = json.loads(stored)
    except ValueError:
        return False
    return isinstance(meta, dict) and meta.get("status") in READY_STATES

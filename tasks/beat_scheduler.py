"""RedBeat, made to ride out a Redis restart, and the one place the schedule is built.

The schedule (beat_schedule.py, from the settings) is built when beat starts its
scheduler, not when tasks.app is imported: every CLI request, API and worker
imports the app, and only beat reads the schedule (~50 ms of cron parsing each).

RedBeat keeps one beat active through a lock in Redis, but its tick lets a
connection error escape and beat exits. Here a tick that cannot reach Redis
is skipped and tried again, and a lock that expired while Redis was away is
waited for again (as a standby does), so two beats never dispatch at once.
"""

import logging
import time
from typing import Any

from redbeat import RedBeatScheduler
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError
from redis.exceptions import TimeoutError as RedisTimeoutError

from beat_schedule import build_beat_schedule
from workers.settings import get_settings

log = logging.getLogger(__name__)


class ResilientRedBeatScheduler(RedBeatScheduler):  # type: ignore[misc]
    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        if not app.conf.beat_schedule:  # one set by hand (a test, a shell) is kept
            app.conf.beat_schedule = build_beat_schedule(get_settings())
        super().__init__(app, *args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            return float(super().tick(*args, **kwargs))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("beat: Redis unreachable (%s); trying again", type(exc).__name__)
            return float(self.max_interval)
        except LockError:
            log.warning("beat: lost the beat lock while Redis was away; waiting to take it again")
            self._wait_for_lock()
            return 0.0

    def _wait_for_lock(self) -> None:
        while True:
            try:
                self.lock.acquire()  # blocking: another beat may be active now
                log.info("beat: Acquired lock")
                return
            except (RedisConnectionError, RedisTimeoutError):
                time.sleep(self.max_interval)

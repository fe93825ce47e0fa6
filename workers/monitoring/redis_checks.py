"""Is the broker's Redis safe to hold tasks? An evicting Redis silently drops queued backups."""

from redis.exceptions import RedisError

from workers.monitoring.redis_client import CHECK, redis_client
from workers.redact import redact

SAFE_POLICY = "noeviction"


def eviction_problem(url: str) -> str | None:
    """A clear sentence when Redis at `url` may evict broker keys; None when it will not."""
    try:
        client = redis_client(url, CHECK)
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except RedisError as exc:
        # Managed Redis often forbids CONFIG: say so instead of guessing.
        return (
            f"could not read maxmemory-policy from {redact(url)} ({type(exc).__name__}); "
            f"make sure it is `{SAFE_POLICY}`, or queued tasks may be evicted"
        )
    if policy != SAFE_POLICY:
        return (
            f"Redis at {redact(url)} has maxmemory-policy `{policy}`: under memory pressure "
            f"it will evict queued tasks and locks. Set `maxmemory-policy {SAFE_POLICY}`."
        )
    return None

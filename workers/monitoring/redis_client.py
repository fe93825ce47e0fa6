"""Every Redis client Backfleet makes: one function, the URL forms the settings accept,
and a timeout profile per purpose.

The settings take a URL as Celery does: `redis://`, `rediss://` (TLS, with redis-py's
`ssl_*` query options) and kombu's Unix socket form `redis+socket:///path?virtual_host=N`,
which redis-py spells `unix:///path?db=N`. Kombu also reads `ssl_cert_reqs=CERT_REQUIRED`
where redis-py wants `required`; both forms reach redis-py as the latter.
"""

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

KOMBU_SOCKET = "redis+socket"
# kombu.utils.url.parse_ssl_cert_reqs's names, as redis-py's SSLConnection takes them.
_CERT_REQS = {"CERT_NONE": "none", "CERT_OPTIONAL": "optional", "CERT_REQUIRED": "required"}


@dataclass(frozen=True)
class Profile:
    """How long a client waits, and whether it tries again, for one purpose."""

    connect_timeout: float
    socket_timeout: float
    health_check_interval: int = 0  # seconds idle before a connection is pinged first
    retry: bool = True  # redis-py's default retries; False answers at the first failure


# A job's lock: held for hours, so an idle connection is checked before it is trusted.
LOCKS = Profile(5, 5, health_check_interval=30)
# An operator's or a container's check (`backfleet check`, the healthcheck, eviction).
CHECK = Profile(5, 5)
# Inside a request (readiness, a metrics scrape): answer at once, never pile up retries.
REQUEST = Profile(2, 2, retry=False)
# Is a redis-server we just started answering yet? Polled many times a second.
PROBE = Profile(0.5, 0.5, retry=False)
# Reading whole queues at once (reconcile): quick to connect, patient to read.
SCAN = Profile(5, 30)


def redis_py_url(url: str) -> str:
    """`url` as redis-py's `from_url` reads it (redis://, rediss:// and unix:// only)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    scheme = parts.scheme.lower()
    if scheme == KOMBU_SOCKET:
        # kombu: the path is the socket, virtual_host the database ("", "/" and none: 0).
        query = [
            ("db", str(_database(value))) if key == "virtual_host" else (key, value)
            for key, value in query
        ]
        scheme = "unix"
    elif scheme == "rediss":
        query = [
            (key, _CERT_REQS.get(value, value) if key == "ssl_cert_reqs" else value)
            for key, value in query
        ]
    # Not urlunsplit: it drops the `//` of a URL without a host, and redis-py needs it.
    rebuilt = f"{scheme}://{parts.netloc}{parts.path}"
    return f"{rebuilt}?{urlencode(query)}" if query else rebuilt


def _database(virtual_host: str) -> int:
    name = virtual_host.strip("/")
    try:
        return int(name) if name else 0
    except ValueError:
        raise ValueError(f"virtual_host must be a database number, not {name!r}") from None


def redis_client(url: str, profile: Profile) -> redis.Redis:
    """A client for `url` (any form the settings accept) that waits as `profile` says.

    Options written in the URL's query win over the profile, as in redis-py.
    """
    options: dict[str, object] = {
        "socket_connect_timeout": profile.connect_timeout,
        "socket_timeout": profile.socket_timeout,
        "health_check_interval": profile.health_check_interval,
    }
    if not profile.retry:
        options["retry"] = Retry(NoBackoff(), 0)
    return redis.Redis.from_url(redis_py_url(url), **options)

"""A Redis reached through kombu's Unix socket URL (`redis+socket:///path?virtual_host=N`),
which the settings accept: the namespace lock and every broker check use it as Celery does."""

from collections.abc import Iterator

import pytest
import redis

from api.deps import ping_broker
from tests.servers import RedisServer, started
from workers.monitoring.checks import check_broker
from workers.monitoring.metrics import queue_depths
from workers.operations.broker_tasks import tasks_in_broker
from workers.operations.locks import PREFIX, NamespaceBusy, NamespaceLock, lock_client
from workers.queues import QUEUES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
DB = 3


@pytest.fixture(scope="module")
def socket_redis() -> Iterator[RedisServer]:
    server = started(RedisServer(unix_socket=True))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def socket_url(socket_redis: RedisServer) -> str:
    return f"redis+socket://{socket_redis.socket}?virtual_host={DB}"


@pytest.fixture
def tcp_db(socket_redis: RedisServer) -> Iterator[redis.Redis]:
    """The same database over TCP, to see where the socket clients wrote."""
    client = redis.Redis(host="127.0.0.1", port=socket_redis.port, db=DB)
    yield client
    client.flushdb()
    client.close()


def test_a_namespace_lock_works_over_the_socket_in_the_virtual_host_database(
    socket_url: str, tcp_db: redis.Redis
) -> None:
    client = lock_client(socket_url)
    with NamespaceLock(client, "app", label="backup over a socket", ttl=30) as lock:
        assert tcp_db.exists(PREFIX + "app")  # in database 3, as virtual_host said
        with pytest.raises(NamespaceBusy, match="busy with backup over a socket"):
            NamespaceLock(client, "app", label="another", ttl=30).acquire()
        lock.confirm()
    assert not tcp_db.exists(PREFIX + "app")


def test_the_broker_checks_answer_over_the_socket(socket_url: str, tcp_db: redis.Redis) -> None:
    ping_broker(socket_url)  # the API's readiness
    assert check_broker(socket_url) == "reachable, maxmemory-policy noeviction"  # backfleet check
    tcp_db.rpush(QUEUES[0], b"{}")
    depths = queue_depths(socket_url)  # /metrics
    assert depths is not None and depths[QUEUES[0]] == 1
    assert tasks_in_broker(socket_url) is not None  # reconcile's view of the queues

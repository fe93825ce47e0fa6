"""The one Redis client factory: every URL form the settings accept, read as kombu reads it."""

import os
import subprocess
import sys

import pytest
import redis
from redis.connection import SSLConnection, UnixDomainSocketConnection

from workers.monitoring.redis_client import (
    CHECK,
    LOCKS,
    REQUEST,
    Profile,
    redis_client,
    redis_py_url,
)


def options(url: str, profile: Profile = CHECK) -> dict[str, object]:
    pool = redis_client(url, profile).connection_pool
    return {"class": pool.connection_class, **pool.connection_kwargs}


def test_redis_urls_pass_through_unchanged() -> None:
    url = "redis://:secret@10.0.0.5:6380/4"
    assert redis_py_url(url) == url
    found = options(url)
    assert (found["host"], found["port"], found["db"], found["password"]) == (
        "10.0.0.5",
        6380,
        4,
        "secret",
    )


@pytest.mark.parametrize(
    ("url", "path", "db"),
    [
        ("redis+socket:///run/redis/redis.sock", "/run/redis/redis.sock", None),
        ("redis+socket:///run/redis/redis.sock?virtual_host=3", "/run/redis/redis.sock", 3),
        ("redis+socket:///tmp/r.sock?virtual_host=/5", "/tmp/r.sock", 5),
        ("redis+socket:///tmp/r.sock?virtual_host=", "/tmp/r.sock", 0),
    ],
)
def test_kombu_socket_urls_become_unix_sockets_with_the_virtual_host_as_db(
    url: str, path: str, db: int | None
) -> None:
    found = options(url)
    assert found["class"] is UnixDomainSocketConnection
    assert found["path"] == path
    assert found.get("db") == db  # None: redis-py's default, database 0
    assert "virtual_host" not in found


def test_a_socket_url_keeps_its_password_and_other_options() -> None:
    found = options("redis+socket://:p%40ss@/tmp/r.sock?virtual_host=2&socket_timeout=9")
    assert (found["password"], found["db"], found["socket_timeout"]) == ("p@ss", 2, 9.0)


def test_a_virtual_host_that_is_no_database_number_is_refused() -> None:
    with pytest.raises(ValueError, match="virtual_host must be a database number"):
        redis_py_url("redis+socket:///tmp/r.sock?virtual_host=app")


@pytest.mark.parametrize(
    ("given", "expected"),
    [("CERT_REQUIRED", "required"), ("CERT_NONE", "none"), ("optional", "optional")],
)
def test_rediss_takes_its_tls_options_from_the_query_in_kombu_s_and_redis_py_s_spelling(
    given: str, expected: str
) -> None:
    url = f"rediss://:pw@redis.example:6380/1?ssl_cert_reqs={given}&ssl_ca_certs=/etc/ca.pem"
    found = options(url)
    assert found["class"] is SSLConnection
    assert (found["ssl_cert_reqs"], found["ssl_ca_certs"]) == (expected, "/etc/ca.pem")
    assert (found["host"], found["port"], found["db"]) == ("redis.example", 6380, 1)


def test_profiles_set_timeouts_and_the_url_query_wins() -> None:
    locks = options("redis://127.0.0.1:6379/0", LOCKS)
    assert (locks["socket_connect_timeout"], locks["socket_timeout"]) == (5, 5)
    assert locks["health_check_interval"] == 30
    assert options("redis://127.0.0.1:6379/0?socket_timeout=7", LOCKS)["socket_timeout"] == 7.0


def test_a_request_profile_does_not_retry() -> None:
    client = redis_client("redis://127.0.0.1:1/0", REQUEST)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    retry = client.connection_pool.connection_kwargs["retry"]
    assert retry.get_retries() == 0


def test_an_unknown_scheme_is_refused_as_redis_py_refuses_it() -> None:
    with pytest.raises(ValueError, match="redis://, rediss://, unix://"):
        redis_client("http://127.0.0.1:6379/0", CHECK)


def test_beat_reads_a_socket_broker_url_too() -> None:
    """RedBeat hands its URL to redis-py as is: the app gives it one redis-py can read."""
    code = (
        "from redbeat.schedulers import get_redis; from tasks.app import app; "
        "pool = get_redis(app).connection_pool; "
        "print(pool.connection_kwargs['path'], pool.connection_kwargs['db'])"
    )
    env = {**os.environ, "BROKER_URL": "redis+socket:///tmp/beat.sock?virtual_host=2"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["/tmp/beat.sock", "2"]

"""S3 and Azure stores behind a fault-injecting proxy (tests/faultproxy.py).

Transient faults (resets, 503s, stalls, a body cut mid-way) are retried by the one
retry layer, workers.retry, and the bytes stored or read are exactly right;
permanent ones (bad credentials, a missing bucket) fail at the first attempt.
"""

import base64
import functools
import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from tests.faultproxy import Fault, FaultProxy, Request
from tests.plugins.object_stores import AzuriteServer, S3Server, unique_name
from workers.cli.embedded_redis import free_port
from workers.errors import ConfigError, PermanentError, UnreachableError
from workers.retry import RetryPolicy, call_with_retries
from workers.stores.azure_blob import AzureBlobStore
from workers.stores.base import ObjectStore, UploadedPart
from workers.stores.resuming import ResumingReader
from workers.stores.s3 import S3Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
MiB = 1024 * 1024
PART_POLICY = RetryPolicy(attempts=6, base_delay=0.05, max_delay=0.2)
BinaryReader = Any  # what open_read returned: a BufferedReader over a ResumingReader


@dataclass
class Target:
    """One kind of network store: how to reach it directly or through a proxy."""

    name: str
    flavor: Literal["s3", "azure"]  # whose 503 the proxy answers
    port: int
    direct: ObjectStore
    via: Callable[[FaultProxy], ObjectStore]
    is_part: Callable[[Request], bool]  # does this request upload a part?


def _s3_target(server: S3Server, bucket: str) -> Target:
    settings = server.make_settings(bucket)
    return Target(
        name="s3",
        flavor="s3",
        port=server.port,
        direct=S3Store.from_settings(settings),
        via=lambda proxy: S3Store.from_settings(server.make_settings(bucket, **_at(proxy, "s3"))),
        is_part=lambda r: r.method == "PUT" and "partNumber=" in r.target,
    )


def _azure_target(server: AzuriteServer, container: str) -> Target:
    return Target(
        name="azure",
        flavor="azure",
        port=server.port,
        direct=AzureBlobStore.from_settings(server.make_settings(container)),
        via=lambda proxy: AzureBlobStore.from_settings(
            server.make_settings(container, **_at(proxy, "azure"))
        ),
        is_part=lambda r: r.method == "PUT" and "blockid=" in r.target,  # not comp=blocklist
    )


def _at(proxy: FaultProxy, kind: str) -> dict[str, Any]:
    if kind == "s3":
        return {"aws_s3_endpoint_url": proxy.url}
    return {"azure_storage_account_service_url": f"{proxy.url}/{AzuriteServer.account}/"}


@pytest.fixture(params=["s3", "azure"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "s3":
        yield _s3_target(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"))
    else:
        server = request.getfixturevalue("azurite_server")
        yield _azure_target(server, request.getfixturevalue("azure_container"))


def _sha256_of(store: ObjectStore, key: str) -> tuple[str, BinaryReader]:
    digest = hashlib.sha256()
    handle = store.open_read(key)
    with handle:
        while chunk := handle.read(MiB):
            digest.update(chunk)
    return digest.hexdigest(), handle


def _reader(handle: BinaryReader) -> ResumingReader:
    raw = handle.raw
    assert isinstance(raw, ResumingReader)
    return raw


def test_part_uploads_survive_resets_503s_and_stalls(target: Target) -> None:
    data = os.urandom(20 * MiB)
    part_size = 5 * MiB
    faults = [
        Fault("reset", match=target.is_part, nth=(1,)),
        Fault("error", match=target.is_part, nth=(3,), flavor=target.flavor),
        Fault("stall", match=target.is_part, nth=(5,), stall=1.0),
        Fault("error", match=target.is_part, nth=(7,), flavor=target.flavor),
    ]
    key = "app/2023-02-02t16-00-00/db.pgdump.zst"
    with FaultProxy(("127.0.0.1", target.port), faults, lifetime=50) as proxy:
        store = target.via(proxy)
        upload_id = store.create_upload(key)

        def send(number: int) -> UploadedPart:
            chunk = data[(number - 1) * part_size : number * part_size]
            return call_with_retries(
                functools.partial(store.upload_part, key, upload_id, number, chunk),
                policy=PART_POLICY,
                what=f"part {number}",
            )

        with ThreadPoolExecutor(max_workers=3) as pool:  # as the pipeline does: in parallel
            parts = list(pool.map(send, range(1, len(data) // part_size + 1)))
        store.complete_upload(key, upload_id, parts)
        assert proxy.injected == 4
        assert proxy.by_action == {"reset": 1, "error": 2, "stall": 1}
        assert sum(1 for r in proxy.requests if target.is_part(r)) == 4 + 4  # each fault cost one
    digest, _ = _sha256_of(target.direct, key)
    assert digest == hashlib.sha256(data).hexdigest()


def test_s3_download_resumes_from_the_last_byte(s3_server: S3Server, s3_bucket: str) -> None:
    target = _s3_target(s3_server, s3_bucket)
    data = os.urandom(20 * MiB)
    key = "app/2023-02-02t16-00-00/big.tar"
    target.direct.put_object(key, data)
    cut_at = 3 * MiB + 123
    faults = [Fault("cut", match=lambda r: r.method == "GET", nth=(1, 2), after_bytes=cut_at)]
    with FaultProxy(("127.0.0.1", target.port), faults, lifetime=50) as proxy:
        digest, handle = _sha256_of(target.via(proxy), key)
        assert proxy.injected == 2
        ranges = [r.header("range") for r in proxy.requests if r.method == "GET"]
    assert digest == hashlib.sha256(data).hexdigest()
    assert (_reader(handle).interruptions, _reader(handle).resumes) == (2, 2)
    # The first GET asks for everything; each re-open asks from the last byte the
    # reader got. Each GET is cut after cut_at bytes, and bytes still in flight when
    # the reset lands are lost, so each one moves the start on by at most cut_at.
    assert ranges[0] == ""
    starts = [int(value.removeprefix("bytes=").rstrip("-")) for value in ranges[1:]]
    assert len(starts) == 2 and 0 < starts[0] <= cut_at
    assert starts[0] < starts[1] <= starts[0] + cut_at


def test_azure_download_resumes_from_the_last_chunk(
    azurite_server: AzuriteServer, azure_container: str
) -> None:
    target = _azure_target(azurite_server, azure_container)
    data = os.urandom(12 * MiB)
    key = "app/2023-02-02t16-00-00/big.tar"
    target.direct.put_object(key, data)
    # GET 1 is the first 4 MiB range, GET 2 the second, cut mid-body; the store re-opens
    # at 4 MiB (GETs 3 and 4, cut too, then 5) and goes on with the third range.
    faults = [Fault("cut", match=lambda r: r.method == "GET", nth=(2, 3, 4), after_bytes=MiB)]
    with FaultProxy(("127.0.0.1", target.port), faults, lifetime=50) as proxy:
        digest, handle = _sha256_of(target.via(proxy), key)
        assert proxy.injected == 3
        ranges = [r.header("x-ms-range") for r in proxy.requests if r.method == "GET"]
    assert digest == hashlib.sha256(data).hexdigest()
    assert (_reader(handle).interruptions, _reader(handle).resumes) == (3, 1)
    assert [value.split("-")[0] for value in ranges] == [
        "bytes=0",
        *[f"bytes={4 * MiB}"] * 4,
        f"bytes={8 * MiB}",
    ]


def _attempts(operation: Callable[[], object]) -> tuple[int, BaseException]:
    """Run `operation` under the part retry policy; how many attempts, and the error."""
    count = 0

    def counted() -> object:
        nonlocal count
        count += 1
        return operation()

    with pytest.raises(PermanentError) as raised:
        call_with_retries(counted, policy=PART_POLICY, what="test", sleep=lambda _: None)
    return count, raised.value


def test_s3_wrong_secret_fails_at_once(s3_server: S3Server, s3_bucket: str) -> None:
    wrong = "not-the-secret-" + os.urandom(8).hex()
    with FaultProxy(("127.0.0.1", s3_server.port)) as proxy:
        store = S3Store.from_settings(
            s3_server.make_settings(s3_bucket, aws_secret_key=wrong, **_at(proxy, "s3"))
        )
        count, error = _attempts(lambda: store.put_object("a/b", b"x"))
        assert len(proxy.requests) == 1  # the store's own retries did not retry it either
    assert count == 1
    assert isinstance(error, ConfigError)
    assert "AWS_SECRET_KEY" in str(error)
    assert wrong not in str(error) and s3_server.secret_key not in str(error)


def test_s3_missing_bucket_fails_at_once(s3_server: S3Server) -> None:
    with FaultProxy(("127.0.0.1", s3_server.port)) as proxy:
        store = S3Store.from_settings(s3_server.make_settings(unique_name(), **_at(proxy, "s3")))
        count, error = _attempts(lambda: store.put_object("a/b", b"x"))
        assert len(proxy.requests) == 1
    assert count == 1
    assert isinstance(error, ConfigError)
    assert "AWS_S3_BUCKET_NAME" in str(error) and "backfleet store init" in str(error)


def test_azure_wrong_key_fails_at_once(azurite_server: AzuriteServer, azure_container: str) -> None:
    wrong = base64.b64encode(os.urandom(64)).decode()
    with FaultProxy(("127.0.0.1", azurite_server.port)) as proxy:
        store = AzureBlobStore.from_settings(
            azurite_server.make_settings(
                azure_container, azure_storage_access_key=wrong, **_at(proxy, "azure")
            )
        )
        count, error = _attempts(lambda: store.put_object("a/b", b"x"))
        assert len(proxy.requests) == 1
    assert count == 1
    assert isinstance(error, ConfigError)
    assert "AZURE_STORAGE_ACCESS_KEY" in str(error)
    assert wrong not in str(error)


def test_azure_missing_container_fails_at_once(azurite_server: AzuriteServer) -> None:
    with FaultProxy(("127.0.0.1", azurite_server.port)) as proxy:
        store = AzureBlobStore.from_settings(
            azurite_server.make_settings(unique_name(), **_at(proxy, "azure"))
        )
        count, error = _attempts(lambda: store.upload_part("a/b", "0" * 32, 1, b"x"))
        assert len(proxy.requests) == 1
    assert count == 1
    assert isinstance(error, ConfigError)
    assert "AZURE_STORAGE_CONTAINER_NAME" in str(error) and "backfleet store init" in str(error)


def test_a_server_that_never_recovers_exhausts_the_retries(target: Target) -> None:
    always = [Fault("error", fraction=1.0, flavor=target.flavor)]
    with FaultProxy(("127.0.0.1", target.port), always) as proxy:
        store = target.via(proxy)
        with pytest.raises(Exception, match="failed 4 times") as raised:
            store.put_object("a/b", b"x")  # the store's own retries: 4 attempts (FAST_RETRIES)
        assert proxy.injected == 4
    assert not isinstance(raised.value, PermanentError)


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_check_names_an_unreachable_endpoint(kind: str, request: pytest.FixtureRequest) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store: ObjectStore
    if kind == "s3":
        server: Any = request.getfixturevalue("s3_server")
        store = S3Store.from_settings(server.make_settings("bucket", aws_s3_endpoint_url=dead))
        variable = "AWS_S3_ENDPOINT_URL"
    else:
        server = request.getfixturevalue("azurite_server")
        settings = server.make_settings(
            "container", azure_storage_account_service_url=f"{dead}/devstoreaccount1/"
        )
        store = AzureBlobStore.from_settings(settings)
        variable = "AZURE_STORAGE_ACCOUNT_SERVICE_URL"
    with pytest.raises(UnreachableError, match=variable):
        store.check()

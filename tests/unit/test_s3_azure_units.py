"""S3 and Azure stores without a server: limits, URLs, block ids, checksums, request
parameters, error mapping (and that no message carries a secret), lazy clients,
and the resuming reader."""

import base64
import hashlib
import io
import os
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import urllib3.exceptions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from botocore import exceptions as boto_errors
from pydantic import SecretStr

from workers.errors import (
    ConfigError,
    NotFoundError,
    PermanentError,
    TransientError,
    UnreachableError,
)
from workers.retry import RetryPolicy
from workers.settings import Settings
from workers.stores import make_store
from workers.stores.azure_blob import (
    AzureBlobStore,
    AzureConfig,
    azure_error,
    block_id,
    parse_block_id,
)
from workers.stores.base import UploadedPart
from workers.stores.per_process import PerProcess
from workers.stores.resuming import ResumingReader, resuming_stream
from workers.stores.s3 import S3Config, S3Store, integrity_params, part_mismatches, s3_error

MiB = 1024 * 1024
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
S3 = S3Config(bucket="backups", access_key="AKIDEXAMPLE", secret_key=SECRET)
AZURE = AzureConfig(container="backups", account_name="acct", access_key="a2V5c2VjcmV0a2V5")


# --- limits, URLs, block ids ---------------------------------------------------------------


def test_provider_limits() -> None:
    assert (S3Store.max_parts, S3Store.min_part_size, S3Store.max_part_size) == (
        10_000,
        5 * MiB,
        5 * 1024 * MiB,
    )
    assert (AzureBlobStore.max_parts, AzureBlobStore.max_part_size) == (50_000, 4000 * MiB)
    assert S3Store.parallel_parts and AzureBlobStore.parallel_parts
    assert (S3Store.kind, AzureBlobStore.kind) == ("s3", "azure-blob-storage")


def test_s3_url_is_the_contract_sample() -> None:
    store = S3Store.from_settings(Settings(object_store_location_type="s3"))
    assert store.url_for("app", "2023-02-02t16-00-00") == (
        "https://s3.console.aws.amazon.com/s3/buckets/athena-ondemand-backup?region=us-west-2"
        "&prefix=app/2023-02-02t16-00-00/&showversions=false"
    )


def test_s3_url_uses_prefix_suffix_and_region() -> None:
    config = S3Config(
        bucket="b",
        region="eu-central-1",
        url_prefix="https://console.example/buckets/",
        url_suffix="&p=%v-%v",
    )
    assert S3Store(config).url_for("ns", "ts") == (
        "https://console.example/buckets/b?region=eu-central-1&p=ns-ts"
    )


@pytest.mark.parametrize(
    "service_url",
    ["https://acct.blob.core.windows.net/", "https://acct.blob.core.windows.net"],
)
def test_azure_url_has_one_slash_between_parts(service_url: str) -> None:
    store = AzureBlobStore(AzureConfig(container="backups", service_url=service_url))
    assert store.url_for("app", "2023-02-02t16-00-00") == (
        "https://acct.blob.core.windows.net/backups/app/2023-02-02t16-00-00/"
    )


def test_azure_url_from_a_connection_string() -> None:
    settings = Settings(
        object_store_location_type="azure-blob-storage",
        azure_storage_connection_string=SecretStr(
            "DefaultEndpointsProtocol=https;AccountName=other;AccountKey=a2V5;"
            "EndpointSuffix=core.windows.net"
        ),
    )
    store = make_store(settings)
    assert store.url_for("ns", "ts") == (
        "https://other.blob.core.windows.net/athena-ondemand-backup/ns/ts/"
    )


def test_block_ids_have_one_length_and_parse_back() -> None:
    upload_id = os.urandom(16).hex()
    ids = [block_id(upload_id, n) for n in (1, 9, 10, 999, 50_000)]
    assert len({len(name) for name in ids}) == 1
    assert len(ids[0]) <= 64  # Azure's limit before base64
    assert [parse_block_id(name) for name in ids] == [
        (upload_id, n) for n in (1, 9, 10, 999, 50_000)
    ]
    assert parse_block_id("c29tZSBvdGhlciB0b29s") is None  # another tool's block


# --- checksums and request parameters ---------------------------------------------------


def test_integrity_params() -> None:
    assert integrity_params("CRC32", b"abc") == {
        "ChecksumAlgorithm": "CRC32",
        "ChecksumCRC32": "NSRBwg==",
    }
    assert integrity_params("SHA256", b"abc") == {
        "ChecksumAlgorithm": "SHA256",
        "ChecksumSHA256": "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
    }
    assert integrity_params("MD5", b"abc") == {"ContentMD5": "kAFQmDzST7DWlj99KOF/cg=="}
    assert integrity_params("none", b"abc") == {}


def test_crc32_is_the_zlib_checksum_s3_expects() -> None:
    # ISA-L computes it; S3 checks it against zlib's polynomial.
    data = os.urandom(3 * MiB + 7)
    expected = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert integrity_params("CRC32", data)["ChecksumCRC32"] == expected


def test_crc32c_without_awscrt_names_the_setting() -> None:
    pytest.importorskip("botocore")
    try:
        import awscrt  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="AWS_S3_CHECKSUM_ALGORITHM"):
            integrity_params("CRC32C", b"abc")
    else:
        assert integrity_params("CRC32C", b"abc")["ChecksumCRC32C"] == "Nks/tw=="


class FakeS3:
    """Records calls; answers like S3 for the few operations the tests need."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.parts: dict[int, dict[str, Any]] | None = {}
        self.head: dict[str, Any] | None = None
        self.fail_complete: Exception | None = None

    def create_multipart_upload(self, **params: Any) -> dict[str, Any]:
        self.calls.append(("create", params))
        return {"UploadId": "u1"}

    def upload_part(self, **params: Any) -> dict[str, Any]:
        self.calls.append(("part", params))
        return {"ETag": f'"etag{params["PartNumber"]}"'}

    def list_parts(self, **params: Any) -> dict[str, Any]:
        if self.parts is None:
            raise _client_error("NoSuchUpload", 404)
        return {"Parts": list(self.parts.values()), "IsTruncated": False}

    def complete_multipart_upload(self, **params: Any) -> dict[str, Any]:
        self.calls.append(("complete", params))
        if self.fail_complete is not None:
            raise self.fail_complete
        return {}

    def head_object(self, **params: Any) -> dict[str, Any]:
        if self.head is None:
            raise _client_error("404", 404)
        return self.head

    def put_object(self, **params: Any) -> dict[str, Any]:
        self.calls.append(("put", params))
        return {}

    def copy_object(self, **params: Any) -> dict[str, Any]:
        self.calls.append(("copy", params))
        if self.head is not None:  # the copy is now the object
            self.head = {**self.head, "Metadata": params["Metadata"], "ETag": '"copied"'}
        return {}


def _store_with(fake: FakeS3, config: S3Config = S3, **kwargs: Any) -> S3Store:
    store = S3Store(config, policy=RetryPolicy(attempts=2, base_delay=0, max_delay=0), **kwargs)
    store._s3 = PerProcess(lambda: fake)
    return store


def _part(number: int, size: int, etag: str = "") -> dict[str, Any]:
    return {"PartNumber": number, "Size": size, "ETag": etag or f'"etag{number}"'}


def test_s3_requests_carry_encryption_lock_and_checksum() -> None:
    now = datetime(2023, 2, 2, 16, 0, tzinfo=UTC)
    config = S3Config(
        bucket="b",
        sse="aws:kms",
        sse_kms_key_id="key-1",
        object_lock_mode="COMPLIANCE",
        object_lock_days=30,
        checksum="SHA256",
    )
    fake = FakeS3()
    store = _store_with(fake, config, clock=lambda: now)
    store.create_upload("ns/ts/db")
    store.upload_part("ns/ts/db", "u1", 1, b"abc")
    store.put_object("ns/ts/manifest.json", b"{}")
    create, part, put = (params for _, params in fake.calls)
    expected = {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "key-1",
        "ObjectLockMode": "COMPLIANCE",
        "ObjectLockRetainUntilDate": now + timedelta(days=30),
    }
    assert expected.items() <= create.items() and expected.items() <= put.items()
    assert create["ChecksumAlgorithm"] == "SHA256"
    assert part["ChecksumSHA256"] == "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    assert "ServerSideEncryption" not in part


def test_s3_locked_objects_get_md5_when_no_checksum_is_set() -> None:
    config = S3Config(
        bucket="b", checksum="none", object_lock_mode="GOVERNANCE", object_lock_days=1
    )
    fake = FakeS3()
    store = _store_with(fake, config)
    store.create_upload("k")
    store.upload_part("k", "u1", 1, b"abc")
    create, part = (params for _, params in fake.calls)
    assert "ChecksumAlgorithm" not in create
    assert part["ContentMD5"] == "kAFQmDzST7DWlj99KOF/cg=="


def test_s3_without_checksum_sends_none() -> None:
    fake = FakeS3()
    store = _store_with(fake, S3Config(bucket="b", checksum="none"))
    store.upload_part("k", "u1", 1, b"abc")
    assert not {"ContentMD5", "ChecksumAlgorithm"} & fake.calls[0][1].keys()


def test_s3_complete_sends_the_servers_parts_and_checksums_in_order() -> None:
    fake = FakeS3()
    fake.parts = {
        2: {**_part(2, 3), "ChecksumCRC32": "bbb="},
        1: {**_part(1, 5 * MiB), "ChecksumCRC32": "aaa="},
        3: _part(3, 9),  # in flight when a worker died: not ours to complete with
    }
    store = _store_with(fake)
    parts = [UploadedPart(2, 3, '"etag2"'), UploadedPart(1, 5 * MiB, "etag1")]
    store.complete_upload("k", "u1", parts)
    sent = fake.calls[-1][1]["MultipartUpload"]["Parts"]
    assert sent == [
        {"PartNumber": 1, "ETag": '"etag1"', "ChecksumCRC32": "aaa="},
        {"PartNumber": 2, "ETag": '"etag2"', "ChecksumCRC32": "bbb="},
    ]


def test_s3_complete_refuses_parts_the_server_does_not_hold() -> None:
    fake = FakeS3()
    fake.parts = {1: _part(1, 10)}
    store = _store_with(fake)
    with pytest.raises(PermanentError, match="part 1 holds 10 bytes, not 11"):
        store.complete_upload("k", "u1", [UploadedPart(1, 11, "")])
    assert not [name for name, _ in fake.calls if name == "complete"]


def test_s3_complete_retried_after_its_answer_was_lost() -> None:
    fake = FakeS3()
    fake.parts = {1: _part(1, 10)}
    fake.fail_complete = _client_error("NoSuchUpload", 404)
    fake.head = {"ContentLength": 10}
    _store_with(fake).complete_upload("k", "u1", [UploadedPart(1, 10, "")])
    fake.head = {"ContentLength": 9}
    with pytest.raises(NotFoundError):
        _store_with(fake).complete_upload("k", "u1", [UploadedPart(1, 10, "")])


def test_s3_resume_upload() -> None:
    fake = FakeS3()
    fake.parts = {1: _part(1, 10), 2: _part(2, 5), 3: _part(3, 7)}
    store = _store_with(fake)
    assert store.resume_upload("k", "u1", [UploadedPart(1, 10, '"etag1"'), UploadedPart(2, 5, "")])
    assert not store.resume_upload("k", "u1", [UploadedPart(1, 10, '"other"')])
    assert not store.resume_upload("k", "u1", [UploadedPart(4, 1, "")])
    fake.parts = None
    assert not store.resume_upload("k", "u1", [UploadedPart(1, 10, "")])


def test_part_mismatches_explain_themselves() -> None:
    listed = {1: _part(1, 10)}
    assert part_mismatches([UploadedPart(1, 10, "etag1")], listed) == []
    assert part_mismatches([UploadedPart(2, 1, "")], listed) == ["part 2 is missing"]
    assert part_mismatches([UploadedPart(1, 10, '"x"')], listed) == ["part 1 has another ETag"]


def test_s3_part_numbers_and_sizes_are_bounded() -> None:
    store = _store_with(FakeS3())
    for number in (0, 10_001):
        with pytest.raises(PermanentError):
            store.upload_part("k", "u1", number, b"x")


# --- clients: lazy, one retry layer ---------------------------------------------------


def test_make_store_builds_no_client() -> None:
    s3 = make_store(Settings(object_store_location_type="s3"))
    azure = make_store(Settings(object_store_location_type="azure-blob-storage"))
    assert isinstance(s3, S3Store) and not s3._s3.made
    assert isinstance(azure, AzureBlobStore) and not azure._service.made


def test_s3_client_has_no_retries_of_its_own() -> None:
    config = S3Config(
        bucket="b",
        endpoint_url="http://127.0.0.1:9",
        access_key="AKIDEXAMPLE",
        secret_key=SECRET,
        addressing_style="path",
    )
    client = S3Store(config)._client()
    assert client.meta.config.retries["total_max_attempts"] == 1
    assert client.meta.config.request_checksum_calculation == "when_required"
    assert client.meta.config.response_checksum_validation == "when_required"
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.region_name == "us-west-2"


def test_s3_keys_go_together() -> None:
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY and AWS_SECRET_KEY"):
        S3Store(S3Config(bucket="b", access_key="AKIDEXAMPLE"))._client()


def test_azure_client_has_no_retries_of_its_own() -> None:
    service = AzureBlobStore(AZURE)._client()
    assert getattr(service._config.retry_policy, "total_retries", None) == 0


def test_azure_needs_credentials() -> None:
    with pytest.raises(ConfigError, match="AZURE_STORAGE_ACCESS_KEY"):
        AzureBlobStore(AzureConfig(container="c")).check()


# --- error mapping ----------------------------------------------------------------------


def _client_error(code: str, status: int, message: str = "") -> Exception:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return boto_errors.ClientError(response, "PutObject")  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("error", "kind", "names"),
    [
        (_client_error("SlowDown", 503), TransientError, ""),
        (_client_error("ServiceUnavailable", 503), TransientError, ""),
        (_client_error("InternalError", 500), TransientError, ""),
        (_client_error("RequestTimeout", 400), TransientError, ""),
        (_client_error("ThrottlingException", 400), TransientError, ""),
        (_client_error("502", 502), TransientError, ""),
        (_client_error("504", 504), TransientError, ""),
        (_client_error("AccessDenied", 403), ConfigError, "AWS_ACCESS_KEY"),
        (_client_error("403", 403), ConfigError, "AWS_SECRET_KEY"),
        (_client_error("InvalidAccessKeyId", 403), ConfigError, "AWS_ACCESS_KEY"),
        (_client_error("SignatureDoesNotMatch", 403), ConfigError, "AWS_SECRET_KEY"),
        (_client_error("NoSuchBucket", 404), ConfigError, "AWS_S3_BUCKET_NAME"),
        (_client_error("NoSuchKey", 404), NotFoundError, ""),
        (_client_error("404", 404), NotFoundError, ""),
        (_client_error("KMS.NotFoundException", 400), ConfigError, "AWS_S3_SSE_KMS_KEY_ID"),
        (_client_error("PermanentRedirect", 301), ConfigError, "AWS_S3_REGION"),
        (_client_error("RequestTimeTooSkewed", 403), ConfigError, "clock"),
        (_client_error("MalformedXML", 400), PermanentError, ""),
        (_client_error("BadDigest", 400), TransientError, "damaged in transit"),
        (_client_error("XAmzContentSHA256Mismatch", 400), TransientError, "damaged in transit"),
        (_client_error("InvalidDigest", 400), PermanentError, ""),  # malformed: our bug
        (boto_errors.EndpointConnectionError(endpoint_url="http://x"), UnreachableError, ""),
        (boto_errors.ConnectionClosedError(endpoint_url="http://x"), TransientError, ""),
        (boto_errors.ReadTimeoutError(endpoint_url="http://x"), TransientError, ""),
        (boto_errors.ConnectTimeoutError(endpoint_url="http://x"), UnreachableError, ""),
        (boto_errors.IncompleteReadError(actual_bytes=1, expected_bytes=2), TransientError, ""),
        (urllib3.exceptions.ProtocolError("Connection broken"), TransientError, ""),
        (ConnectionResetError(104, "reset"), TransientError, ""),
        (boto_errors.NoCredentialsError(), ConfigError, "AWS_ACCESS_KEY"),
    ],
)
def test_s3_error_mapping(error: Exception, kind: type, names: str) -> None:
    mapped = s3_error(error, what="upload", config=S3)
    assert type(mapped) is kind
    assert names in str(mapped)


def test_s3_missing_bucket_says_how_to_fix_it() -> None:
    mapped = s3_error(_client_error("NoSuchBucket", 404), what="write", config=S3)
    assert "backfleet store init" in str(mapped)


def test_s3_errors_never_carry_the_secret() -> None:
    noisy = _client_error("SignatureDoesNotMatch", 403, f"expected {SECRET} in StringToSign")
    assert SECRET not in str(s3_error(noisy, what="x", config=S3))
    network = boto_errors.EndpointConnectionError(endpoint_url=f"http://u:{SECRET}@host/")
    assert SECRET not in str(s3_error(network, what="x", config=S3))


def test_s3_bugs_are_not_mapped() -> None:
    assert s3_error(KeyError("x"), what="x", config=S3) is None


def _http_error(
    status: int | None,
    code: str,
    cls: type[HttpResponseError] = HttpResponseError,
    reason: str | None = None,
) -> HttpResponseError:
    error = cls(message=f"AuthenticationErrorDetail: signature {AZURE.access_key}")
    error.status_code, error.reason = status, reason
    error.error_code = code  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(
    ("error", "kind", "names"),
    [
        (_http_error(503, "ServerBusy"), TransientError, ""),
        (_http_error(500, "OperationTimedOut"), TransientError, ""),
        (_http_error(500, "InternalError"), TransientError, ""),
        (_http_error(None, ""), TransientError, ""),  # a body the SDK gave up reading
        (_http_error(403, "AuthenticationFailed"), ConfigError, "AZURE_STORAGE_ACCESS_KEY"),
        (
            _http_error(403, "AuthenticationFailed", ClientAuthenticationError),
            ConfigError,
            "AZURE_STORAGE_ACCESS_KEY",
        ),
        (
            _http_error(404, "ContainerNotFound", ResourceNotFoundError),
            ConfigError,
            "AZURE_STORAGE_CONTAINER_NAME",
        ),
        (_http_error(404, "BlobNotFound", ResourceNotFoundError), NotFoundError, ""),
        (_http_error(412, "ConditionNotMet", ResourceModifiedError), PermanentError, "changed"),
        (_http_error(400, "InvalidBlockList"), PermanentError, "InvalidBlockList"),
        (_http_error(400, "Md5Mismatch"), TransientError, "damaged in transit"),
        (_http_error(400, "Crc64Mismatch"), TransientError, "damaged in transit"),
        (  # Azurite's answer to a wrong Content-MD5
            _http_error(400, "InvalidOperation", reason="Provided contentMD5 doesn't match."),
            TransientError,
            "damaged in transit",
        ),
        (_http_error(400, "InvalidOperation"), PermanentError, "InvalidOperation"),
        (ServiceRequestError("connection refused"), UnreachableError, ""),
        (ServiceResponseError("connection reset"), TransientError, ""),
        (ConnectionResetError(104, "reset"), TransientError, ""),
    ],
)
def test_azure_error_mapping(error: Exception, kind: type, names: str) -> None:
    mapped = azure_error(error, what="upload", config=AZURE)
    assert type(mapped) is kind
    assert names in str(mapped)
    assert AZURE.access_key is not None and AZURE.access_key not in str(mapped)


def test_azure_credential_hint_follows_the_method_in_use() -> None:
    sas = AzureConfig(container="c", sas_token="?sv=2022&sig=abc123secret")
    mapped = azure_error(_http_error(403, "AuthenticationFailed"), what="x", config=sas)
    assert "AZURE_STORAGE_SAS_TOKEN" in str(mapped)
    by_string = AzureConfig(container="c", connection_string="AccountName=a;AccountKey=k3y5ecret")
    mapped = azure_error(_http_error(403, "AuthenticationFailed"), what="x", config=by_string)
    assert "AZURE_STORAGE_CONNECTION_STRING" in str(mapped)


def test_azure_transport_errors_lose_sas_and_keys() -> None:
    config = AzureConfig(
        container="c", connection_string="AccountName=a;AccountKey=k3y5ecretvalue;"
    )
    error = ServiceRequestError(
        "Max retries exceeded with url: /c/b?sv=2022&sig=s1gnature k3y5ecretvalue"
    )
    message = str(azure_error(error, what="x", config=config))
    assert "s1gnature" not in message and "k3y5ecretvalue" not in message


# --- the resuming reader ------------------------------------------------------------------


class Flaky:
    """Serves `data` from an offset; breaks after `limit` bytes with a TransientError."""

    def __init__(self, data: bytes, offset: int, limit: int | None) -> None:
        self.data, self.offset, self.limit = data, offset, limit

    def read(self, size: int = -1, /) -> bytes:
        if self.limit is not None and self.limit <= 0:
            raise TransientError("connection reset")
        size = len(self.data) if size < 0 else size
        if self.limit is not None:
            size = min(size, self.limit)
            self.limit -= size
        chunk = self.data[self.offset : self.offset + size]
        self.offset += len(chunk)
        return chunk

    def close(self) -> None:
        pass


def test_reader_resumes_from_the_last_byte_served() -> None:
    data = os.urandom(100_000)
    opened: list[int] = []
    limits: Iterator[int | None] = iter([30_000, 0, 25_000, None])

    def open_range(offset: int) -> Flaky:
        opened.append(offset)
        return Flaky(data, offset, next(limits))

    reader = ResumingReader(
        open_range, size=len(data), policy=RetryPolicy(3, 0, 0), what="t", sleep=lambda _: None
    )
    out = io.BufferedReader(reader, buffer_size=8192).read()
    assert out == data
    assert opened == [0, 30_000, 30_000, 55_000]
    assert (reader.interruptions, reader.resumes) == (3, 3)


def test_reader_treats_an_early_end_as_a_break() -> None:
    data = b"0123456789"
    opened: list[int] = []

    def open_range(offset: int) -> io.BytesIO:
        opened.append(offset)
        return io.BytesIO(data[offset : offset + 4])  # each connection ends too soon

    stream = resuming_stream(open_range, size=len(data), policy=RetryPolicy(3, 0, 0), what="t")
    assert stream.read() == data
    assert opened == [0, 4, 8]


def test_reader_gives_up_without_progress() -> None:
    def open_range(offset: int) -> Flaky:
        return Flaky(b"abc", offset, 0)

    reader = ResumingReader(
        open_range, size=3, policy=RetryPolicy(4, 0, 0), what="t", sleep=lambda _: None
    )
    with pytest.raises(TransientError, match="no progress at byte 0 of 3 after 4 attempts"):
        reader.read(3)


def test_reader_lets_permanent_errors_through() -> None:
    def open_range(offset: int) -> Flaky:
        raise PermanentError("the object changed while it was being read")

    first = Flaky(b"abcdef", 0, 2)
    reader = ResumingReader(open_range, size=6, policy=RetryPolicy(4, 0, 0), what="t", first=first)
    assert reader.read(6) == b"ab"
    with pytest.raises(PermanentError, match="changed"):
        reader.read(4)


def test_reader_of_an_empty_object_opens_nothing() -> None:
    def open_range(offset: int) -> Flaky:
        raise AssertionError("nothing to read")

    stream = resuming_stream(open_range, size=0, policy=RetryPolicy(), what="t")
    assert stream.read() == b""


def test_s3_a_completed_upload_is_copied_onto_itself_with_its_sha256() -> None:
    now = datetime(2023, 2, 2, 16, 0, tzinfo=UTC)
    config = S3Config(bucket="b", sse="AES256", object_lock_mode="GOVERNANCE", object_lock_days=2)
    fake = FakeS3()
    fake.parts = {1: _part(1, 10)}
    fake.head = {"ContentLength": 10, "ETag": '"done-1"'}
    store = _store_with(fake, config, clock=lambda: now)
    store.complete_upload("k", "u1", [UploadedPart(1, 10, "")], sha256="ab" * 32)
    name, copy = fake.calls[-1]
    assert name == "copy"
    assert copy == {
        "Bucket": "b",
        "Key": "k",
        "CopySource": {"Bucket": "b", "Key": "k"},
        "CopySourceIfMatch": '"done-1"',  # only the object this upload made
        "MetadataDirective": "REPLACE",
        "Metadata": {"sha256": "ab" * 32},
        "ServerSideEncryption": "AES256",  # a copy keeps neither encryption nor lock
        "ObjectLockMode": "GOVERNANCE",
        "ObjectLockRetainUntilDate": now + timedelta(days=2),
        "ChecksumAlgorithm": "CRC32",
    }
    assert store.stored_sha256("k") == "ab" * 32
    # A completion retried after the copy went through copies nothing again.
    fake.parts = None
    store.complete_upload("k", "u1", [UploadedPart(1, 10, "")], sha256="ab" * 32)
    assert [name for name, _ in fake.calls].count("copy") == 1


def test_s3_no_copy_without_a_digest_or_with_the_setting_off() -> None:
    for config, sha256 in ((S3, None), (S3Config(bucket="b", sha256_metadata=False), "cd" * 32)):
        fake = FakeS3()
        fake.parts = {1: _part(1, 10)}
        fake.head = {"ContentLength": 10, "ETag": '"x"'}
        _store_with(fake, config).complete_upload(
            "k", "u1", [UploadedPart(1, 10, "")], sha256=sha256
        )
        assert "copy" not in [name for name, _ in fake.calls]
    assert not Settings(aws_s3_sha256_metadata="false").aws_s3_sha256_metadata


def test_s3_put_object_carries_its_sha256() -> None:
    fake = FakeS3()
    _store_with(fake).put_object("ns/ts/manifest.json", b"{}")
    ((_, put),) = fake.calls
    assert put["Metadata"] == {"sha256": hashlib.sha256(b"{}").hexdigest()}

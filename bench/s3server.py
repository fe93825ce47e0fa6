"""A local S3 server (`rclone serve s3`) for one benchmark run, and bucket housekeeping.

Buckets are folders under `<state>/root`; the server is started on a free
port of 127.0.0.1, stopped by its PID at the end, and its state removed.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.common import REPO_DIR

ACCESS_KEY = "backfleetbenchkey"
SECRET_KEY = "backfleetbenchsecret0123456789"
REGION = "us-east-1"
RCLONE = REPO_DIR / ".venv" / "bin" / "rclone"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    def __init__(self, state: Path, *, rclone: Path = RCLONE, start_timeout: float = 20.0) -> None:
        self.state, self.rclone, self.start_timeout = state, rclone, start_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def root(self) -> Path:
        return self.state / "root"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def __enter__(self) -> "S3Server":
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        shutil.rmtree(self.state, ignore_errors=True)
        self.root.mkdir(parents=True)
        (self.state / "cache").mkdir()
        self.port = free_port()
        log = open(self.state / "server.log", "wb")  # noqa: SIM115 (lives as long as the server)
        command = [str(self.rclone), "serve", "s3", "--addr", f"127.0.0.1:{self.port}"]
        command += ["--auth-key", f"{ACCESS_KEY},{SECRET_KEY}", "--config", "/dev/null"]
        command += ["--cache-dir", str(self.state / "cache"), str(self.root)]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited: see {self.state / 'server.log'}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"rclone serve s3 did not listen within {self.start_timeout:.0f}s")

    def stop(self, grace: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.state, ignore_errors=True)

    # --- buckets ---
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
                region_name=REGION,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
            )
        return self._client

    def create_bucket(self, name: str) -> None:
        self.remove_bucket(name)
        self.client().create_bucket(Bucket=name)

    def remove_bucket(self, name: str) -> None:
        """Delete every object and unfinished upload, then the bucket; the folder goes too."""
        client = self.client()
        with contextlib.suppress(Exception):
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        with contextlib.suppress(Exception):
            uploads = client.list_multipart_uploads(Bucket=name).get("Uploads", [])
            for upload in uploads:
                client.abort_multipart_upload(
                    Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
                )
        with contextlib.suppress(Exception):
            client.delete_bucket(Bucket=name)
        shutil.rmtree(self.root / name, ignore_errors=True)

    def bucket_files(self, name: str) -> list[Path]:
        """The files that hold a bucket's objects on disk (to re-read before a timed restore)."""
        found: list[Path] = []
        for directory, _dirs, files in os.walk(self.root / name):
            found.extend(Path(directory) / file for file in files)
        return found

    def object_size(self, bucket: str, key: str) -> int:
        return int(self.client().head_object(Bucket=bucket, Key=key)["ContentLength"])

"""The manifest: written last, it is what makes a backup complete.

The store, not the catalog, is the source of truth: a catalog on a new cluster
finds a backup it never took by reading `<namespace>/<timestamp>/manifest.json`.
"""

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from workers.errors import IntegrityError

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


class ArtifactEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    service: str
    key: str
    format: str  # pgdump, sqlite, tar
    compression: Literal["zstd", "none"]
    encryption: dict[str, Any] | None = None
    size: int  # bytes stored
    sha256: str  # of the stored bytes: checkable without any key
    source_size: int  # bytes the source produced
    source: dict[str, Any] = {}  # facts at dump time, e.g. row counts per table


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: int = MANIFEST_VERSION
    namespace: str
    timestamp: str
    only_config: bool = False
    trigger: str = "api"
    started_at: str
    finished_at: str
    artifacts: list[ArtifactEntry]

    def artifact(self, service: str) -> ArtifactEntry | None:
        return next((entry for entry in self.artifacts if entry.service == service), None)

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> "Manifest":
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise IntegrityError(f"manifest is not valid: {exc.error_count()} problem(s)") from None


def backup_prefix(namespace: str, timestamp: str) -> str:
    return f"{namespace}/{timestamp}/"


def manifest_key(namespace: str, timestamp: str) -> str:
    return backup_prefix(namespace, timestamp) + MANIFEST_NAME


def artifact_key(namespace: str, timestamp: str, service: str, fmt: str, compression: str) -> str:
    suffix = ".zst" if compression == "zstd" else ""
    return f"{backup_prefix(namespace, timestamp)}{service}.{fmt}{suffix}"

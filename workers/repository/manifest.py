"""The manifest: written last, it is what makes a backup complete.

The store, not the catalog, is the source of truth: a catalog on a new cluster
finds a backup it never took by reading `<namespace>/<timestamp>/manifest.json`.
"""

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from workers.errors import IntegrityError
from workers.repository.manifest_mac import MacKey, sign

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


class ArtifactEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    service: str
    volume: int = 1  # large directories are split into volumes, restored in order
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
        """The service's first (often only) artifact."""
        return next(iter(self.artifacts_of(service)), None)

    def artifacts_of(self, service: str) -> list[ArtifactEntry]:
        """Every volume of the service, in order."""
        return sorted(
            (entry for entry in self.artifacts if entry.service == service),
            key=lambda entry: entry.volume,
        )

    def services(self) -> list[str]:
        return list(dict.fromkeys(entry.service for entry in self.artifacts))

    def to_bytes(self, signer: MacKey | None = None) -> bytes:
        """The stored form; with `signer`, it carries a MAC (workers/repository/manifest_mac.py)."""
        document = self.model_dump(mode="json")
        if signer is not None:
            document = sign(document, signer)
        return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> "Manifest":
        return parse_manifest(data)[0]


def parse_manifest(data: bytes) -> tuple[Manifest, dict[str, Any]]:
    """The manifest and the JSON document it was read from (what a MAC covers).

    Both come from one parse, and a repeated key is refused, so what is checked
    is exactly what is used. NaN and Infinity (not JSON, and no canonical form
    for a MAC) and nesting deeper than the parser's stack are refused too: a
    forged manifest must end as IntegrityError, not as an error a caller retries.
    """
    try:
        document = json.loads(data, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        return Manifest.model_validate(document), document
    except ValidationError as exc:
        raise IntegrityError(f"manifest is not valid: {exc.error_count()} problem(s)") from None
    except ValueError as exc:  # JSON syntax (JSONDecodeError), a repeated key, NaN
        raise IntegrityError(f"manifest is not valid JSON: {exc}") from None
    except RecursionError:
        raise IntegrityError("manifest is not valid: nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name, value in pairs:
        if name in document:
            raise ValueError(f"the key {name!r} appears twice")
        document[name] = value
    return document


def backup_prefix(namespace: str, timestamp: str) -> str:
    return f"{namespace}/{timestamp}/"


def manifest_key(namespace: str, timestamp: str) -> str:
    return backup_prefix(namespace, timestamp) + MANIFEST_NAME


def artifact_key(
    namespace: str,
    timestamp: str,
    service: str,
    fmt: str,
    compression: str,
    *,
    encrypted: bool = False,
    volume: int = 1,
) -> str:
    """`<service>.<format>[.zst][.enc]`; volumes after the first add `.v0002` and so on."""
    name = service if volume == 1 else f"{service}.v{volume:04d}"
    suffix = (".zst" if compression == "zstd" else "") + (".enc" if encrypted else "")
    return f"{backup_prefix(namespace, timestamp)}{name}.{fmt}{suffix}"

"""Request and response bodies of the HTTP API (DESIGN.md section 1: these names must not drift)."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from workers.catalog.listing import ListedBackup
from workers.catalog.models import Artifact, Backup, HookRun, Restore
from workers.services_config import DNS_LABEL
from workers.timestamps import is_timestamp


def _dns_label(value: str) -> str:
    # The message never echoes the value: the caller knows what was sent.
    if not DNS_LABEL.match(value):
        raise ValueError(
            "must be a DNS label: lower-case letters, digits and '-', 1-63 characters, "
            "starting and ending with a letter or digit"
        )
    return value


def _timestamp(value: str) -> str:
    if not is_timestamp(value):
        raise ValueError("must be a backup timestamp like 2023-02-02t17-03-15 (UTC)")
    return value


# The forms in the OpenAPI document, for the docs and for clients. Only the schema: the
# validators above still decide (and word the 422), exactly as before they were documented.
EXAMPLE_TS = "2023-02-02t17-03-15"
DNS_LABEL_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
    "minLength": 1,
    "maxLength": 63,
    "examples": ["app"],
}
TIMESTAMP_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}t[0-9]{2}-[0-9]{2}-[0-9]{2}$",
    "minLength": 19,
    "maxLength": 19,
    "examples": [EXAMPLE_TS],
}

DnsLabel = Annotated[str, AfterValidator(_dns_label), WithJsonSchema(DNS_LABEL_SCHEMA)]
Timestamp = Annotated[str, AfterValidator(_timestamp), WithJsonSchema(TIMESTAMP_SCHEMA)]
# Strings documented so and checked later (GET restorestatus: from the query or the body).
TimestampText = Annotated[str, WithJsonSchema(TIMESTAMP_SCHEMA)]
DnsLabelText = Annotated[str, WithJsonSchema(DNS_LABEL_SCHEMA)]


# --- requests: unknown fields are refused, so a typo never passes silently ---

NAMESPACE = "Defaults to the fleet's default namespace"


class BackupRequest(BaseModel):
    """`POST /ondemandbackup`: `{}` (every service) or `{"onlyConfig": true}`."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [{}, {"onlyConfig": True}]}
    )

    only_config: StrictBool = Field(  # no "true", no 1
        default=False,
        alias="onlyConfig",
        description="Back up only the services marked `config = true` in the services file",
    )
    namespace: DnsLabel | None = Field(default=None, description=NAMESPACE)


class ServiceToggle(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The seed documentation's prose says `disabled`, its JSON `disable`: both are taken.
    disable: StrictBool = Field(
        default=False,
        validation_alias=AliasChoices("disable", "disabled"),
        description="`true`: leave this service as it is (`disabled` is taken too)",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        # Both spellings at once is ambiguous when they differ: say so, never pick one.
        both = isinstance(data, dict) and "disable" in data and "disabled" in data
        if both and data["disable"] != data["disabled"]:
            raise ValueError("`disable` and `disabled` disagree: give one of them")
        return data


class RestoreRequest(BaseModel):
    """`POST /ondemandrestore`: which backup, from where, and which services to skip."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "timestamp": EXAMPLE_TS,
                    "sourceNamespace": "app",
                    "svcs": {"gitserver": {"disable": False}, "postgres": {"disable": False}},
                }
            ]
        },
    )

    timestamp: Timestamp = Field(description="The backup to restore")
    source_namespace: DnsLabel | None = Field(
        default=None,
        alias="sourceNamespace",
        description="Where the backup lives, if not in the target namespace; the API key "
        "must hold both namespaces",
    )
    svcs: dict[DnsLabel, ServiceToggle] | None = Field(
        default=None,
        description="Services to skip, by name: every service of the backup is restored "
        "unless disabled here; a name the backup does not hold is a 422",
    )
    namespace: DnsLabel | None = Field(
        default=None, description="The namespace restored into; " + NAMESPACE.lower()
    )
    # Accept a backup that cannot be authenticated (recorded on the restore; docs/security.md).
    allow_unsigned: StrictBool = Field(
        default=False,
        alias="allowUnsigned",
        description="Restore a backup whose manifest cannot be authenticated (an older "
        "fleet's, say); the override is recorded on the restore",
    )

    @property
    def skipped(self) -> list[str]:
        return sorted(name for name, toggle in (self.svcs or {}).items() if toggle.disable)


class RestoreStatusQuery(BaseModel):
    """`GET /restorestatus`: from the JSON body, or else the query string."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timestamp: Timestamp = Field(description="The backup whose newest restore is reported")
    namespace: DnsLabel | None = Field(
        default=None, description="Only restores into this namespace"
    )


# --- responses ---


class _Response(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Message(_Response):
    """Every acknowledgement and every error: `{"code": N, "message": "..."}`."""

    code: int = Field(description="The HTTP status code, repeated")
    message: str = Field(description="What was accepted, or what went wrong and what to fix")


class Status(_Response):
    """Where a backup lives and how its backup (or restore) went."""

    backupurl: str = Field(
        description="Where the backup lives: the S3 console, the Azure container, or a "
        "`file://` directory"
    )
    namespace: str = Field(description="The namespace the backup belongs to")
    status: str = Field(description="`Pending`, `Running`, `Success` or `Failed`")
    timestamp: str = Field(description="The backup's timestamp (UTC)", examples=[EXAMPLE_TS])

    @classmethod
    def of_backup(cls, backup: Backup, *, url: str) -> "Status":
        return cls(
            backupurl=url,
            namespace=backup.namespace,
            status=backup.status,
            timestamp=backup.timestamp,
        )

    @classmethod
    def of_restore(cls, restore: Restore) -> "Status":
        # `namespace` and `backupurl` name where the backup lives, not the target.
        return cls(
            backupurl=restore.backup_url,
            namespace=restore.source_namespace,
            status=restore.status,
            timestamp=restore.timestamp,
        )


class BackupStatus(Status):
    """`backup/latest`: Status plus the last verification's verdict (null: never verified),
    and what was unusual about its sizes (null: nothing; it is Success all the same)."""

    verified: str | None = Field(
        default=None, description="The last verification's verdict; null: never verified"
    )
    verified_at: datetime | None = None
    size_anomaly: str | None = Field(
        default=None, description="What was unusual about its sizes; null: nothing"
    )

    @classmethod
    def of_backup(cls, backup: Backup, *, url: str) -> "BackupStatus":
        return cls(**cls._fields_of(backup, url))

    @staticmethod
    def _fields_of(backup: Backup, url: str) -> dict[str, Any]:
        """The fields `latest` and the backup's detail share."""
        return {
            **Status.of_backup(backup, url=url).model_dump(),
            "verified": backup.verified,
            "verified_at": backup.verified_at,
            "size_anomaly": backup.size_anomaly,
        }


class ArtifactDetail(_Response):
    service: str
    volume: int
    key: str
    status: str
    bytes_done: int  # source bytes read so far: progress while Running
    size: int | None
    source_size: int | None
    sha256: str | None
    encryption: dict[str, str] | None
    error: str | None
    size_anomaly: str | None = None  # on a service's first volume: its sizes were unusual

    @classmethod
    def of(cls, artifact: Artifact) -> "ArtifactDetail":
        return cls(
            service=artifact.service,
            volume=artifact.volume,
            key=artifact.key,
            status=artifact.status,
            bytes_done=artifact.bytes_done,
            size=artifact.size,
            source_size=artifact.source_size,
            sha256=artifact.sha256,
            encryption=artifact.encryption,
            error=artifact.error,
            size_anomaly=artifact.size_anomaly,
        )


class HookRunDetail(_Response):
    """One run of a service's `pre` or `post` hook; `output` is its redacted tail."""

    service: str
    hook: str
    attempt: int
    program: str
    status: str
    detail: str
    output: str
    started_at: datetime
    finished_at: datetime

    @classmethod
    def of(cls, run: HookRun) -> "HookRunDetail":
        return cls(
            service=run.service,
            hook=run.hook,
            attempt=run.attempt,
            program=run.program,
            status=run.status,
            detail=run.detail,
            output=run.output,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )


class BackupDetail(BackupStatus):
    services: list[str]
    only_config: bool
    trigger: str
    error: str | None
    warning: str | None  # what went wrong without failing it: a `post` hook that failed
    size: int | None
    started_at: datetime | None
    finished_at: datetime | None
    artifacts: list[ArtifactDetail]
    hooks: list[HookRunDetail]

    @classmethod
    def of(cls, backup: Backup, *, url: str) -> "BackupDetail":
        """Call inside the session: it reads the backup's artifacts."""
        return cls(
            **cls._fields_of(backup, url),
            services=list(backup.services),
            only_config=backup.only_config,
            trigger=backup.trigger,
            error=backup.error,
            warning=backup.warning,
            size=backup.size,
            started_at=backup.started_at,
            finished_at=backup.finished_at,
            artifacts=[ArtifactDetail.of(artifact) for artifact in backup.artifacts],
            hooks=[HookRunDetail.of(run) for run in backup.hook_runs],
        )


class BackupSummary(BackupStatus):
    """One backup of `GET /backups`: BackupStatus plus what the detail says of the backup
    as a whole (its fields keep the detail's names), its artifacts' stored and source
    bytes, when it was asked for, and its duration."""

    services: list[str] = Field(description="The services it holds, or is to hold")
    only_config: bool = Field(description="Only the configuration services (`onlyConfig`)")
    trigger: str = Field(description="What asked for it: `api`, `schedule`, `cli`…")
    error: str | None = Field(description="Why it failed; null: it did not")
    warning: str | None = Field(
        description="What went wrong without failing it (a `post` hook that failed)"
    )
    size: int | None = Field(
        description="Its stored bytes once it succeeded (as in its detail); null: not a "
        "successful backup"
    )
    stored_size: int | None = Field(
        description="The stored bytes (compressed, encrypted) of its artifacts, whatever its "
        "status: so far, while it runs; null: no artifact stored yet"
    )
    source_size: int | None = Field(
        description="The bytes its artifacts were made from; null: no artifact stored yet"
    )
    created_at: datetime = Field(description="When it was asked for")
    started_at: datetime | None = Field(description="When a worker started it")
    finished_at: datetime | None = Field(description="When it ended, successful or not")
    duration_seconds: float | None = Field(
        description="From its start to its end; null: not started or not ended yet"
    )

    @classmethod
    def of_listed(cls, listed: ListedBackup, *, url: str) -> "BackupSummary":
        backup = listed.backup
        duration = (
            round((backup.finished_at - backup.started_at).total_seconds(), 3)
            if backup.started_at is not None and backup.finished_at is not None
            else None
        )
        return cls(
            **cls._fields_of(backup, url),
            services=list(backup.services),
            only_config=backup.only_config,
            trigger=backup.trigger,
            error=backup.error,
            warning=backup.warning,
            size=backup.size,
            stored_size=listed.stored,
            source_size=listed.source,
            created_at=backup.created_at,
            started_at=backup.started_at,
            finished_at=backup.finished_at,
            duration_seconds=duration,
        )


class BackupList(_Response):
    """A page of `GET /backups`, newest first."""

    backups: list[BackupSummary]
    next: str | None = Field(
        description="The `cursor` of the next page (with the same filters); null: this "
        "was the last page"
    )


class Health(BaseModel):
    status: str = Field(description="`ok`", examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(description="`ready`, or `not ready`", examples=["ready"])
    checks: dict[str, str] = Field(
        description="Each check (`catalog`, `broker`, `store`): `ok`, or why it failed",
        examples=[{"catalog": "ok", "broker": "ok", "store": "ok"}],
    )


class NotReady(Readiness):
    """`/readyz` when a check failed: the checks, and a message naming the failed ones."""

    code: int = Field(description="503")
    message: str = Field(description="`not ready: ` and each failed check with why")


def openapi_body(
    model: type[BaseModel], *, required: bool, description: str | None = None
) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON body that a dependency parses by hand.

    Nested models are inlined: their `#/$defs/...` references would not
    resolve inside an OpenAPI document.
    """
    schema = model.model_json_schema(by_alias=True)
    defs: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    content = {"application/json": {"schema": inline(schema)}}
    body: dict[str, Any] = {"required": required, "content": content}
    if description:
        body["description"] = description
    return {"requestBody": body}

"""Request bodies: unknown fields are refused, so a typo never passes silently; and how
a body parsed by hand is documented in OpenAPI."""

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictBool, model_validator

from api.schemas.fields import EXAMPLE_MOMENT, EXAMPLE_TS, DnsLabel, Moment, Timestamp

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
    """`POST /ondemandrestore`: which backup (or which moment), from where, and which
    services to skip."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "timestamp": EXAMPLE_TS,
                    "sourceNamespace": "app",
                    "svcs": {"gitserver": {"disable": False}, "postgres": {"disable": False}},
                },
                {"targetTime": EXAMPLE_MOMENT},
            ]
        },
    )

    timestamp: Timestamp | None = Field(
        default=None,
        description="The backup to restore; optional with `targetTime` (then the fleet picks "
        "the newest backup the WAL replays to that moment from)",
    )
    target_time: Moment | None = Field(
        default=None,
        alias="targetTime",
        description="Restore the `pitr` services to this moment (RFC 3339, UTC: "
        "`2023-02-02T16:42:07Z`) by replaying their streamed WAL onto a base backup; the "
        "backup's other services are restored as they were at backup time. A moment outside "
        "a service's recoverable window is a 422 naming the window",
    )
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

    @model_validator(mode="after")
    def _backup_or_moment(self) -> "RestoreRequest":
        if self.timestamp is None and self.target_time is None:
            raise ValueError("give the backup's `timestamp`, or a `targetTime`")
        return self

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

"""API keys and their scopes: from BACKFLEET_API_KEYS, and hashed from BACKFLEET_API_KEYS_FILE.

An entry of BACKFLEET_API_KEYS is `key`, `key:owner-email:customer` (both: every
namespace, every role) or `key:owner-email:customer:namespaces:roles`, with
namespaces `+`-joined or `*` and roles a `+`-joined subset of ROLES.

The keys file (TOML) holds only the SHA-256 of each key, so the secret need
not sit in the environment:

    [[keys]]
    sha256 = "<64 hex digits: printf %s "$KEY" | sha256sum>"
    owner = "ops@example.com"          # optional: the userEmail of its events
    customer = "acme"                  # optional: the customerName
    namespaces = ["app", "team-b"]     # or ["*"]: every namespace
    roles = ["read", "backup"]         # a subset of read, backup, restore, ingest

Every key is held as the SHA-256 of its bytes; a presented key is hashed once
and compared with every digest in constant time. No error message here ever
contains a key or a digest.
"""

import hashlib
import hmac
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

Role = Literal["read", "backup", "restore", "ingest"]
ROLES: tuple[Role, ...] = get_args(Role)
EVERY_NAMESPACE = "*"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")  # as workers.services_config
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}\Z")
_FILE_FIELDS = frozenset({"sha256", "owner", "customer", "namespaces", "roles"})
# What `printf %s "$KEY" | sha256sum` gives when KEY is unset or misspelt.
_EMPTY_KEY_DIGEST = hashlib.sha256(b"").hexdigest()


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class ApiKey:
    """One key: who holds it, and which namespaces and roles it may act with."""

    key: str  # the secret itself; "" when only its hash is known (keys file)
    owner_email: str = ""
    customer: str = ""
    namespaces: frozenset[str] | None = None  # None: every namespace
    roles: frozenset[Role] = frozenset(ROLES)
    digest: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", key_digest(self.key))

    def __repr__(self) -> str:  # never the key, nor its digest
        scope = "*" if self.namespaces is None else "+".join(sorted(self.namespaces))
        return (
            f"ApiKey(owner_email={self.owner_email!r}, customer={self.customer!r}, "
            f"namespaces={scope!r}, roles={'+'.join(r for r in ROLES if r in self.roles)!r})"
        )

    def may_act_on(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def holds(self, role: Role) -> bool:
        return role in self.roles


def match_api_key(presented: str, keys: Iterable[ApiKey]) -> ApiKey | None:
    """The key whose digest equals the presented key's, comparing in constant time with each."""
    token = presented.strip()
    scheme, _, rest = token.partition(" ")
    if scheme.lower() == "bearer":
        token = rest.strip()
    if not token:  # `Authorization: Bearer` alone presents no key at all
        return None
    given = key_digest(token)
    found: ApiKey | None = None
    for key in keys:  # no early exit: the time taken says nothing about which key matched
        if hmac.compare_digest(given, key.digest) and found is None:
            found = key
    return found


def _namespaces(names: list[str], where: str) -> frozenset[str] | None:
    if names == [EVERY_NAMESPACE]:
        return None
    if not names:
        raise ValueError(f"{where}: namespaces is empty; list them, or use `*` for every one")
    for name in names:
        if not _DNS_LABEL.match(name):
            raise ValueError(
                f"{where}: namespace {name!r} is not a DNS label (or `*` alone for every one)"
            )
    return frozenset(names)


def _roles(names: list[str], where: str) -> frozenset[Role]:
    if not names:
        raise ValueError(f"{where}: roles is empty; give a subset of {', '.join(ROLES)}")
    roles: set[Role] = set()
    for name in names:
        if name not in ROLES:
            raise ValueError(f"{where}: unknown role {name!r}; roles are {', '.join(ROLES)}")
        roles.add(name)  # type: ignore[arg-type]  # checked against ROLES just above
    return frozenset(roles)


def parse_api_keys(raw: str) -> list[ApiKey]:
    """BACKFLEET_API_KEYS: comma-separated entries; ValueError names the bad entry, not its key."""
    keys: list[ApiKey] = []
    for position, entry in enumerate(raw.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) not in (1, 3, 5) or not parts[0]:
            raise ValueError(
                f"entry {position} must be `key`, `key:owner-email:customer` or "
                "`key:owner-email:customer:namespaces:roles` (keys contain no `:`)"
            )
        if len(parts) == 5:
            where = f"entry {position}"
            keys.append(
                ApiKey(
                    parts[0],
                    parts[1],
                    parts[2],
                    namespaces=_namespaces(parts[3].split("+") if parts[3] else [], where),
                    roles=_roles(parts[4].split("+") if parts[4] else [], where),
                )
            )
        elif len(parts) == 3:
            keys.append(ApiKey(parts[0], parts[1], parts[2]))
        else:
            keys.append(ApiKey(parts[0]))
    return keys


def _strings(entry: dict[str, object], name: str, where: str) -> list[str]:
    value = entry.get(name)
    if isinstance(value, str):
        value = [value]  # `namespaces = "*"` reads as well as `["*"]`
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{where}: {name} must be a list of strings")
    return [str(item) for item in value]


def _file_entry(entry: object, position: int) -> ApiKey:
    where = f"[[keys]] entry {position}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a table")
    unknown = sorted(set(entry) - _FILE_FIELDS)
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {', '.join(unknown)}; "
            f"the fields are {', '.join(sorted(_FILE_FIELDS))}"
        )
    for required in ("sha256", "namespaces", "roles"):
        if required not in entry:
            raise ValueError(f"{where}: {required} is required")
    digest = entry["sha256"]
    if not isinstance(digest, str) or not _HEX_DIGEST.match(digest):
        # Never echoed: a key pasted here by mistake must not reach a log.
        raise ValueError(
            f"{where}: sha256 must be 64 hex digits, the SHA-256 of the key "
            '(printf %s "$KEY" | sha256sum), not the key itself'
        )
    if digest.lower() == _EMPTY_KEY_DIGEST:
        raise ValueError(
            f"{where}: sha256 is the SHA-256 of an empty key (was $KEY set when it was hashed?)"
        )
    for name in ("owner", "customer"):
        if not isinstance(entry.get(name, ""), str):
            raise ValueError(f"{where}: {name} must be a string")
    return ApiKey(
        "",
        str(entry.get("owner", "")),
        str(entry.get("customer", "")),
        namespaces=_namespaces(_strings(entry, "namespaces", where), where),
        roles=_roles(_strings(entry, "roles", where), where),
        digest=bytes.fromhex(digest),
    )


def load_api_keys_file(path: Path) -> list[ApiKey]:
    """The keys of BACKFLEET_API_KEYS_FILE; ValueError says what to fix, never echoing a hash."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"keys"})
    if extra:
        raise ValueError(
            f"{path}: unknown top-level key(s) {', '.join(extra)}; write [[keys]] tables"
        )
    entries = data.get("keys", [])
    if not isinstance(entries, list):
        raise ValueError(f"{path}: `keys` must be an array of tables ([[keys]])")
    try:
        return [_file_entry(entry, position) for position, entry in enumerate(entries, 1)]
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


@lru_cache(maxsize=16)
def configured_keys(raw: str, path: Path | None) -> tuple[ApiKey, ...]:
    """Every key of the variable and the file, parsed once; ValueError if one is given twice."""
    keys = parse_api_keys(raw) + (load_api_keys_file(path) if path is not None else [])
    seen: set[bytes] = set()
    for position, key in enumerate(keys, start=1):
        if key.digest in seen:
            raise ValueError(
                f"key number {position} (counting BACKFLEET_API_KEYS, then the file's entries) "
                "is the same key as an earlier one: give each key once"
            )
        seen.add(key.digest)
    return tuple(keys)

"""The cluster's roles, kept with every PostgreSQL backup and created where a restore lacks them.

A database dump names roles (`ALTER … OWNER TO app`, `GRANT … TO readers`) but does
not hold them: they belong to the cluster. So each backup also reads the roles, with
their attributes, comments, settings and memberships, in the dump's own snapshot,
and stores them as a small JSON document in the artifact's preamble
(transfer/preamble.py: inside the compressed and encrypted bytes, under the same SHA-256).

Why not `pg_dumpall --globals-only`: its script creates and alters every role and
fails on the first that exists, while a restore must create only the roles the
target lacks and leave every existing one exactly as it is; structured data lets
it choose per role. The catalogs read are the ones pg_dumpall reads (pg_roles,
pg_auth_members, pg_db_role_setting, pg_shdescription; pg_authid only for passwords).
Tablespaces are left out: a database's tablespaces must exist in the target already.

A restore (postgres.py) plans against the target: roles missing there are created,
with their attributes, comment and settings; a membership is granted when its
member was created. The statements are tried once in a transaction that is rolled
back (a missing privilege is named before psql starts), then run in the same
transaction as the data: a restore that fails leaves no role behind.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, ValidationError

from workers.errors import IntegrityError, SourceError

FORMAT = "backfleet-postgres-roles"
VERSION = 1

# Predefined roles (pg_*) exist in every cluster: never stored, never created.
_ROLES = """
SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
  r.rolreplication, r.rolbypassrls, r.rolconnlimit,
  pg_catalog.to_json(r.rolvaliduntil) #>> '{{}}',
  pg_catalog.shobj_description(r.oid, 'pg_authid'),
  ARRAY(SELECT pg_catalog.unnest(s.setconfig) FROM pg_catalog.pg_db_role_setting s
        WHERE s.setrole = r.oid AND s.setdatabase = 0),
  ARRAY(SELECT pg_catalog.unnest(s.setconfig) FROM pg_catalog.pg_db_role_setting s
        JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
        WHERE s.setrole = r.oid AND d.datname = pg_catalog.current_database()),
  {password}
FROM pg_catalog.pg_roles r {join}
WHERE r.rolname !~ '^pg_'
ORDER BY r.rolname
"""
# PostgreSQL 16 records a membership per grantor, with INHERIT and SET options.
_MEMBERSHIPS = """
SELECT g.rolname, m.rolname, pg_catalog.bool_or(a.admin_option), {options}
FROM pg_catalog.pg_auth_members a
JOIN pg_catalog.pg_roles g ON g.oid = a.roleid
JOIN pg_catalog.pg_roles m ON m.oid = a.member
WHERE m.rolname !~ '^pg_'
GROUP BY 1, 2 ORDER BY 1, 2
"""
_OPTIONS_16 = "pg_catalog.bool_or(a.inherit_option), pg_catalog.bool_or(a.set_option)"
# Settings whose value is a list (pg_dump's variable_is_guc_list_quote): one literal per item.
_LIST_SETTINGS = frozenset(
    {
        "local_preload_libraries",
        "search_path",
        "session_preload_libraries",
        "shared_preload_libraries",
        "temp_tablespaces",
        "unix_socket_directories",
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Role(_Strict):
    name: str
    superuser: bool = False
    inherit: bool = True
    createrole: bool = False
    createdb: bool = False
    login: bool = False
    replication: bool = False
    bypassrls: bool = False
    connection_limit: int = -1
    valid_until: str | None = None
    password: str | None = None  # the stored hash; only with role_passwords = true
    comment: str | None = None
    settings: tuple[str, ...] = ()  # `name=value`, for every database
    database_settings: tuple[str, ...] = ()  # `name=value`, in the backed-up database only


class Membership(_Strict):
    role: str
    member: str
    admin: bool = False
    inherit: bool | None = None  # PostgreSQL 16+; before, the member's own INHERIT decides
    set: bool | None = None


class Roles(_Strict):
    format: str = FORMAT
    version: int = VERSION
    passwords: bool = False
    roles: tuple[Role, ...] = ()
    memberships: tuple[Membership, ...] = ()

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Roles":
        try:
            document = json.loads(data)
        except ValueError:
            document = None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise IntegrityError("the backup's roles are not readable: the artifact is corrupt")
        if document.get("version") != VERSION:
            raise IntegrityError(
                f"the backup's roles are in a format this Backfleet does not know (version "
                f"{document.get('version')!r}): restore it with a newer Backfleet"
            )
        try:
            return cls.model_validate(document)
        except ValidationError:
            raise IntegrityError(
                "the backup's roles are not readable: the artifact is corrupt"
            ) from None

    def secrets(self) -> list[str]:
        """The password hashes it holds (masked in every message)."""
        return [role.password for role in self.roles if role.password]

    def facts(self) -> dict[str, Any]:
        """What the manifest says of them: counts, never a name or a hash (`hashes`: whether
        the password hashes were kept)."""
        return {
            "count": len(self.roles),
            "memberships": len(self.memberships),
            "hashes": self.passwords,
        }


def read_roles(conn: psycopg.Connection[Any], *, passwords: bool) -> Roles:
    """The cluster's roles as `conn` sees them (in its transaction: the dump's snapshot).

    Without `passwords` only world-readable catalogs are read (any role can); with
    it, pg_authid, which a superuser or a member of pg_read_all_data may read:
    SourceError says so otherwise.
    """
    if passwords and not _one(conn, "SELECT pg_catalog.has_table_privilege('pg_authid', 'SELECT')"):
        raise SourceError(
            "role_passwords = true needs the backup role to read pg_authid: connect as a "
            "superuser, GRANT pg_read_all_data to it (PostgreSQL 14+), or leave "
            "role_passwords out"
        )
    query = _ROLES.format(
        password="a.rolpassword" if passwords else "NULL::text",
        join="JOIN pg_catalog.pg_authid a ON a.oid = r.oid" if passwords else "",
    )
    roles = tuple(
        Role(
            name=row[0],
            superuser=row[1],
            inherit=row[2],
            createrole=row[3],
            createdb=row[4],
            login=row[5],
            replication=row[6],
            bypassrls=row[7],
            connection_limit=row[8],
            valid_until=row[9],
            comment=row[10],
            settings=tuple(row[11]),
            database_settings=tuple(row[12]),
            password=row[13],
        )
        for row in conn.execute(query).fetchall()  # type: ignore[call-overload]
    )
    version = int(_one(conn, "SHOW server_version_num"))
    query = _MEMBERSHIPS.format(options=_OPTIONS_16 if version >= 160000 else "NULL, NULL")
    memberships = tuple(
        Membership(role=row[0], member=row[1], admin=row[2], inherit=row[3], set=row[4])
        for row in conn.execute(query).fetchall()  # type: ignore[call-overload]
    )
    return Roles(passwords=passwords, roles=roles, memberships=memberships)


@dataclass(frozen=True)
class RolePlan:
    """What a restore does to the target cluster's roles: the statements and whom they create."""

    created: tuple[str, ...]
    granted: tuple[Membership, ...]
    statements: tuple[str, ...]

    def script(self) -> str:
        """The statements for psql, whose errors are terse meanwhile: psql then never
        echoes a failing statement (a password hash may be in it)."""
        if not self.statements:
            return ""
        body = "".join(f"{statement};\n" for statement in self.statements)
        return f"\\set VERBOSITY terse\n{body}\\set VERBOSITY default\n"


def plan_roles(conn: psycopg.Connection[Any], roles: Roles) -> RolePlan:
    """The roles of the backup the target cluster lacks, and how to create them.

    Existing roles are never altered: neither their attributes nor their memberships
    (a membership is granted only to a member this restore creates). A restoring role
    that is not a superuser is made a member of the roles it creates (PostgreSQL lets
    only a member give a role ownership: the dump's `ALTER … OWNER TO`). Raises
    SourceError, naming what to grant, when the connected role cannot create them;
    the statements were tried in a transaction that was rolled back.
    """
    existing = {row[0] for row in conn.execute("SELECT rolname FROM pg_catalog.pg_roles")}
    missing = [role for role in roles.roles if role.name not in existing]
    if not missing:
        return RolePlan((), (), ())
    superuser = _check_privileges(conn, missing)
    created = {role.name for role in missing}
    granted = tuple(m for m in roles.memberships if m.member in created)
    version = int(_one(conn, "SHOW server_version_num"))
    database = str(_one(conn, "SELECT pg_catalog.current_database()"))
    composed: list[sql.Composable] = []
    for role in missing:
        composed.extend(_create(role, database))
    composed.extend(_grant(membership, version) for membership in granted)
    if not superuser:
        composed.extend(_grant_to_restorer(role.name, version) for role in missing)
    plan = RolePlan(
        created=tuple(role.name for role in missing),
        granted=granted,
        statements=tuple(statement.as_string(conn) for statement in composed),
    )
    _try(conn, plan)
    return plan


def _check_privileges(conn: psycopg.Connection[Any], missing: Sequence[Role]) -> bool:
    """Whether the connected role is a superuser; SourceError if it cannot create `missing`."""
    row = conn.execute(
        "SELECT current_user, rolsuper, rolcreaterole FROM pg_catalog.pg_roles "
        "WHERE rolname = current_user"
    ).fetchone()
    assert row is not None
    user, superuser, createrole = row
    names = _names(role.name for role in missing)
    if not superuser and not createrole:
        raise SourceError(
            f"the target cluster lacks the backup's roles {names}, and {user} may not create "
            f"them: as a superuser, ALTER ROLE {_quoted(user)} CREATEROLE (or create those "
            "roles first: existing roles are left as they are)"
        )
    supers = [role.name for role in missing if role.superuser]
    if supers and not superuser:
        raise SourceError(
            f"the backup's roles {_names(supers)} are superusers and missing from the target "
            f"cluster; only a superuser may create them: restore as a superuser, or create "
            "them first (with any attributes: existing roles are left as they are)"
        )
    return bool(superuser)


def _grant_to_restorer(name: str, version: int) -> sql.Composable:
    """Membership of the restoring role in a role it created: SET, to give it ownership
    (`ALTER … OWNER TO`), and INHERIT, to grant on its objects as the dump does (what
    a membership always meant before PostgreSQL 16)."""
    grant = sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(name))
    return grant + sql.SQL(" WITH INHERIT TRUE, SET TRUE") if version >= 160000 else grant


def _try(conn: psycopg.Connection[Any], plan: RolePlan) -> None:
    """Run the plan in a transaction that is rolled back: any refusal is named now."""
    conn.rollback()
    try:
        with conn.transaction(force_rollback=True):
            for statement in plan.statements:
                conn.execute(statement.encode())
    except psycopg.Error as exc:
        detail = f" ({exc.diag.message_detail})" if exc.diag.message_detail else ""
        raise SourceError(
            f"the target cluster lacks the backup's roles {_names(plan.created)} and creating "
            f"them failed (tried and rolled back, nothing changed): "
            f"{exc.diag.message_primary or exc}{detail}"
        ) from None


def _create(role: Role, database: str) -> list[sql.Composable]:
    name = sql.Identifier(role.name)
    words = [
        "SUPERUSER" if role.superuser else "NOSUPERUSER",
        "INHERIT" if role.inherit else "NOINHERIT",
        "CREATEROLE" if role.createrole else "NOCREATEROLE",
        "CREATEDB" if role.createdb else "NOCREATEDB",
        "LOGIN" if role.login else "NOLOGIN",
        "REPLICATION" if role.replication else "NOREPLICATION",
        "BYPASSRLS" if role.bypassrls else "NOBYPASSRLS",
    ]
    parts: list[sql.Composable] = [
        sql.SQL("CREATE ROLE {} WITH {} CONNECTION LIMIT {}").format(
            name, sql.SQL(" ".join(words)), sql.Literal(role.connection_limit)
        )
    ]
    if role.valid_until is not None:
        parts.append(sql.SQL("VALID UNTIL {}").format(sql.Literal(role.valid_until)))
    if role.password is not None:
        parts.append(sql.SQL("PASSWORD {}").format(sql.Literal(role.password)))
    statements: list[sql.Composable] = [sql.SQL(" ").join(parts)]
    if role.comment is not None:
        statements.append(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(name, sql.Literal(role.comment))
        )
    for setting in role.settings:
        statements.append(sql.SQL("ALTER ROLE {} SET ").format(name) + _setting(setting))
    for setting in role.database_settings:
        statements.append(
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET ").format(name, sql.Identifier(database))
            + _setting(setting)
        )
    return statements


def _setting(setting: str) -> sql.Composable:
    """`name TO value` of a stored `name=value`, as pg_dump writes it."""
    variable, _, value = setting.partition("=")
    values = _split_list(value) if variable.lower() in _LIST_SETTINGS else [value]
    return sql.SQL("{} TO {}").format(
        sql.Identifier(variable), sql.SQL(", ").join(sql.Literal(item) for item in values)
    )


def _split_list(value: str) -> list[str]:
    """The items of a list setting as stored (`"$user", public`): pg_dump's SplitGUCList."""
    items: list[str] = []
    index, end = 0, len(value)
    while True:
        while index < end and value[index].isspace():
            index += 1
        if index < end and value[index] == '"':
            index += 1
            item: list[str] = []
            while index < end:
                if value[index] == '"':
                    if value[index + 1 : index + 2] != '"':
                        index += 1
                        break
                    index += 1  # a doubled quote stands for one
                item.append(value[index])
                index += 1
            items.append("".join(item))
        else:
            start = index
            while index < end and value[index] != "," and not value[index].isspace():
                index += 1
            items.append(value[start:index])
        while index < end and value[index].isspace():
            index += 1
        if index < end and value[index] == ",":
            index += 1
            continue
        return items


def _grant(membership: Membership, version: int) -> sql.Composable:
    grant = sql.SQL("GRANT {} TO {}").format(
        sql.Identifier(membership.role), sql.Identifier(membership.member)
    )
    if version >= 160000:
        options: list[sql.Composable] = [
            sql.SQL("ADMIN {}").format(sql.SQL(str(membership.admin).upper()))
        ]
        for word, value in (("INHERIT", membership.inherit), ("SET", membership.set)):
            if value is not None:
                options.append(sql.SQL(f"{word} {str(value).upper()}"))
        return grant + sql.SQL(" WITH ") + sql.SQL(", ").join(options)
    return grant + sql.SQL(" WITH ADMIN OPTION") if membership.admin else grant


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()  # type: ignore[call-overload]
    assert row is not None
    return row[0]


def _names(names: Any) -> str:
    return ", ".join(sorted(names))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'

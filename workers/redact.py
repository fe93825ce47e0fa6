"""Scrub secrets from any text bound for a log, an error message or the catalog.

Patterns catch the shapes a secret takes in a message without being known
(URL passwords, `password=…`, JSON `"password": "…"` and camelCase names, Azure `AccountKey=`,
SAS signatures, `Authorization` headers, PostgreSQL password hashes); `secrets` masks the values the
fleet knows wherever they appear. `url_password_forms` gives every form a
URL's password may take in a message, for that list.
"""

import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"

# `scheme://user:password@host`: the password runs to the LAST `@` of the token,
# so a raw `/` or `@` in it (`postgresql://u:p@ss/w@rd@db/app`) is masked whole.
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@'\"]*:)[^\s'\"]*(?P<tail>@)"
)
# Connection-string fields whose value runs to the next `;` (Azure, Service Bus).
_CONNECTION_FIELD = re.compile(
    r"(?i)(?P<head>\b(?:AccountKey|SharedAccessSignature|SharedAccessKey)\s*=\s*)[^\s;'\"]+"
)
# After `Authorization`, whatever follows is the credential, however short.
_AUTHORIZATION = re.compile(
    r"(?i)(?P<head>\b(?:Bearer|Basic|Token)\s+)[A-Za-z0-9._~+/=-]{4,}"
    r"|(?P<header>\bAuthorization\s*[=:]\s*(?:(?:Bearer|Basic|Token)\s+)?)[^\s,;'\"]+"
)
# `password=x`, `password: x`, `"password": "x"`, `db_password=x`, `X-Api-Key: x`, and
# camelCase names (`"secretAccessKey": "x"`, `dbPassword=x`)…
_KEY_VALUE = re.compile(
    r"(?i)(?P<head>(?:\b|(?<=_))(?:[\w-]*[_-]|[a-z0-9]+(?=(?-i:[A-Z])))?"
    r"(?:password|passwd|pwd|pgpassword|secret|token|access_?key|api[_-]?key|private_?key|sig)"
    r"(?-i:[A-Z][A-Za-z]*)?"
    r"(?P<quote>['\"]?)\s*[=:]\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,'\"}]+)"
)

# A PostgreSQL password hash (pg_authid.rolpassword): a SCRAM verifier or an md5 hash.
_PASSWORD_HASH = re.compile(r"SCRAM-SHA-256\$[^\s'\"]+|\bmd5[0-9a-f]{32}\b")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask every secret-shaped value, then every known secret value."""
    text = _PASSWORD_HASH.sub(MASK, text)
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)
    text = _CONNECTION_FIELD.sub(lambda m: f"{m['head']}{MASK}", text)
    text = _AUTHORIZATION.sub(lambda m: f"{m['head'] or m['header']}{MASK}", text)
    text = _KEY_VALUE.sub(_mask_value, text)
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


# A URL carrying credentials, and a libpq conninfo string (two or more `key=value`).
_CREDENTIAL_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"]*@[^\s'\"]*")
_CONNINFO_PAIR = r"\w+\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^\s;,'\"]+)"
_CONNINFO = re.compile(rf"\b(?:{_CONNINFO_PAIR}\s+)+{_CONNINFO_PAIR}")
_CONNINFO_WORD = re.compile(r"(?i)\b(?:host|hostaddr|port|dbname|user|password|sslmode)\s*=")


def strip_connection_strings(text: str) -> str:
    """Replace each credential-bearing URL or libpq conninfo string in `text` by a placeholder."""
    text = _CREDENTIAL_URL.sub("<connection URL>", text)
    return _CONNINFO.sub(
        lambda m: "<connection string>" if _CONNINFO_WORD.search(m[0]) else m[0], text
    )


def _mask_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[:1] in ("'", '"') else match["quote"]  # JSON stays JSON
    return f"{match['head']}{quote}{MASK}{quote}"


def url_password_forms(url: str | None) -> list[str]:
    """The password of `scheme://user:password@host…` as written, decoded, and as libpq reads it.

    The raw form runs to the last `@`, so a password with a raw `/` or `@` is
    whole; libpq cuts such a URL at its first `@` or `/` and may echo the rest
    as a host or database name, so each piece of the raw form is listed too.
    """
    if not url:
        return []
    match = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/:@]*:(?P<password>.*)@", url, re.S)
    if match is None:
        return []
    raw = match["password"]
    forms = {raw, unquote(raw)}
    forms.update(piece for piece in re.split(r"[/@?#:]", raw) if piece)
    return sorted(form for form in forms if form)

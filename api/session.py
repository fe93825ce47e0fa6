"""The catalog page's sessions: a signed, expiring token in a cookie, never the API key.

A browser cannot add an Authorization header to a plain link, so the page (api/ui/)
also takes a cookie that its login form sets once the key is checked. The cookie holds

    v1.<expiry, epoch seconds>.<key id>.<MAC>

The key id names the API key without revealing anything of it: an HMAC of the key's
SHA-256 under the session secret. The MAC is an HMAC-SHA256 of the rest under the same
secret. The secret is BACKFLEET_UI_SECRET, else derived (HKDF-SHA256) from the keys of
BACKFLEET_API_KEYS: every replica of the API derives the same one, and changing the keys
ends every session. A derived secret signs sessions only for the keys it was derived
from (session_keys): a key of the keys file then opens the page with its header only.
A fleet with only hashed keys (BACKFLEET_API_KEYS_FILE) and no
BACKFLEET_UI_SECRET has no secret to sign with: its page takes the Authorization header
only, and its login form says what to set.

A session lasts SESSION_SECONDS, and only while its key is configured: a key taken out of
the settings ends its sessions at the next request. Nothing is stored server-side.
"""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

from workers.api_keys import ApiKey
from workers.repository.manifest_mac import hkdf_sha256
from workers.settings import Settings

# The page and its forms: under /athena/ (api/auth.py guards it, api/audit.py records it),
# outside /athena/api/v1 (the versioned JSON API, which never takes the cookie).
PAGE_PATH = "/athena/ui"
LOGIN_PATH = f"{PAGE_PATH}/login"
LOGOUT_PATH = f"{PAGE_PATH}/logout"
# Reached without a key: the login form is how a browser gives one; logging out needs none.
OPEN_PATHS = frozenset({LOGIN_PATH, LOGOUT_PATH})
COOKIE = "backfleet_session"
SESSION_SECONDS = 8 * 3600
VERSION = "v1"
_SALT = b"backfleet ui session v1"
_INFO = b"session hmac-sha256 key"
_KEY_ID = b"backfleet ui key id"


def is_page(path: str) -> bool:
    """A path of the page, where a GET may present the session cookie instead of a key."""
    return path == PAGE_PATH or path.startswith(f"{PAGE_PATH}/")


def session_secret(settings: Settings) -> bytes | None:
    """The key sessions are signed with; None when the settings hold no secret to derive it."""
    if settings.backfleet_ui_secret is not None:
        material = settings.backfleet_ui_secret.get_secret_value().strip()
    else:
        # Only the keys given in clear: a keys file holds hashes, which are not secret enough.
        material = "\n".join(sorted(key.key for key in settings.api_keys if key.key))
    if not material:
        return None
    return hkdf_sha256(material.encode(), salt=_SALT, info=_INFO, length=32)


def session_keys(settings: Settings) -> list[ApiKey]:
    """The keys a session may stand for. With BACKFLEET_UI_SECRET, every configured key;
    with a derived secret, only the keys given in clear, which went into it. A key from the
    keys file must never be one: its hash is all a holder of the only clear key would need
    to sign a session for it with a secret derived from that one key."""
    keys = list(settings.api_keys)
    if settings.backfleet_ui_secret is not None:
        return keys
    return [key for key in keys if key.key]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _key_id(secret: bytes, key: ApiKey) -> str:
    return _b64(hmac.new(secret, _KEY_ID + key.digest, hashlib.sha256).digest()[:16])


def _mac(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, payload.encode(), hashlib.sha256).digest()


def issue(secret: bytes, key: ApiKey, *, now: int) -> str:
    """A token naming `key`, valid for SESSION_SECONDS from `now`."""
    payload = f"{VERSION}.{now + SESSION_SECONDS}.{_key_id(secret, key)}"
    return f"{payload}.{_b64(_mac(secret, payload))}"


def holder(token: str, secret: bytes, keys: Sequence[ApiKey], *, now: int) -> ApiKey | None:
    """The configured key a valid, unexpired token names; None for anything else."""
    version, _, rest = token.partition(".")
    expiry, _, rest = rest.partition(".")
    key_id, _, mac = rest.partition(".")
    if version != VERSION or not (expiry.isascii() and expiry.isdigit()) or len(expiry) > 12:
        return None
    if not key_id:
        return None
    try:
        given = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(given, _mac(secret, f"{version}.{expiry}.{key_id}")):
        return None
    if not now < int(expiry) <= now + SESSION_SECONDS:
        return None
    found: ApiKey | None = None
    for key in keys:  # no early exit, as workers.api_keys.match_api_key
        if hmac.compare_digest(_key_id(secret, key), key_id) and found is None:
            found = key
    return found

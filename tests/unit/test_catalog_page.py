"""The catalog page (`GET /athena/ui`) and its sign-in, against a real SQLite catalog.

Its security: the same keys as the API (the header, or a session from the login form);
a session cookie that is HttpOnly, SameSite=Strict, signed, expiring and never the key,
taken by the page's GETs only (never by the JSON API, never by a POST); forms refused
from another origin; every value escaped, no script, nothing loaded; a scoped key sees
its namespaces only; a login leaves no key in the audit trail. And what it shows: the
backups, the drills and their RTO verdict, the open alerts.

(tests/integration/test_catalog_page_browser.py signs in with a real browser.)
"""

import hashlib
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from api.main import create_app
from api.recorder import recorder
from api.session import COOKIE, SESSION_SECONDS, issue, session_secret
from tests.catalog_seed import ALERT_TEXT, SCRIPT_ERROR, Seeded, seed_catalog
from tests.unit.test_api import RecordingEnqueue, make_fleet
from tests.unit.test_api_docs import other_hosts, resource_urls
from workers.api_keys import key_digest
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import UserEvent
from workers.fleet import Fleet
from workers.settings import Settings

PAGE, LOGIN, LOGOUT = "/athena/ui", "/athena/ui/login", "/athena/ui/logout"
ORIGIN = "http://testserver"  # TestClient's
KEY = "page-every-namespace-8c1d"
APP_KEY = "page-app-only-2f7e"
NO_READ_KEY = "page-no-read-90ab"
KEYS = ",".join(
    [
        f"{KEY}:ops@example.com:acme",
        f"{APP_KEY}:dev@example.com:acme:app:read",
        f"{NO_READ_KEY}:ci@example.com:acme:*:backup",
    ]
)
FILE_KEY = "page-key-only-in-the-keys-file-7d3a"  # only its hash is configured


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:1/0")
    yield
    recorder.drain()
    dispose_engines()


def with_settings(fleet: Fleet, **changes: Any) -> Fleet:
    return Fleet(fleet.settings.model_copy(update=changes), fleet.config, fleet.store)


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    keys_file = tmp_path / "keys.toml"
    digest = hashlib.sha256(FILE_KEY.encode()).hexdigest()
    keys_file.write_text(
        f'[[keys]]\nsha256 = "{digest}"\nowner = "file@example.com"\n'
        'namespaces = ["*"]\nroles = ["read"]\n'
    )
    fleet = make_fleet(tmp_path, KEYS)
    return with_settings(fleet, backfleet_api_keys_file=keys_file, enable_user_events=True)


@pytest.fixture
def seeded(fleet: Fleet) -> Seeded:
    return seed_catalog(fleet.settings.database_url)


def browser(fleet: Fleet, base_url: str = ORIGIN) -> TestClient:
    """A client that keeps cookies, as a browser does, and does not follow redirects."""
    return TestClient(
        create_app(lambda: fleet, RecordingEnqueue()), base_url=base_url, follow_redirects=False
    )


def log_in(client: TestClient, key: str, origin: str = ORIGIN) -> Any:
    return client.post(LOGIN, data={"key": key}, headers={"Origin": origin})


def signed_in(fleet: Fleet, key: str = KEY) -> TestClient:
    client = browser(fleet)
    answer = log_in(client, key)
    assert answer.status_code == 303 and answer.headers["location"] == PAGE, answer.text
    return client


class Markup(HTMLParser):
    """Every tag and attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [name for name, _ in attrs]


def markup(page: str) -> Markup:
    parser = Markup()
    parser.feed(page)
    return parser


# --- getting in ---


def test_without_a_session_the_page_sends_a_browser_to_the_login_form(fleet: Fleet) -> None:
    client = browser(fleet)
    answer = client.get(PAGE)
    assert answer.status_code == 303 and answer.headers["location"] == LOGIN
    form = client.get(LOGIN)
    assert form.status_code == 200 and form.headers["content-type"].startswith("text/html")
    assert 'name="key"' in form.text and 'type="password"' in form.text
    assert resource_urls(form.text) == [] and "script" not in markup(form.text).tags


def test_the_authorization_header_opens_the_page_as_any_call(fleet: Fleet, seeded: Seeded) -> None:
    client = browser(fleet)
    answer = client.get(PAGE, headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200 and seeded.good in answer.text
    wrong = client.get(PAGE, headers={"Authorization": "not-a-key"})
    assert wrong.status_code == 401  # a key that is given is checked, never sent to the form


def test_the_login_form_sets_a_signed_session_that_is_never_the_key(
    fleet: Fleet, seeded: Seeded
) -> None:
    client = browser(fleet)
    answer = log_in(client, KEY)
    assert answer.status_code == 303 and answer.headers["location"] == PAGE
    cookie = answer.headers["set-cookie"]
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/athena/ui", f"max-age={SESSION_SECONDS}"} <= (
        attributes
    )
    assert "secure" not in attributes  # plain http: a Secure cookie would never come back
    value = client.cookies[COOKIE]
    for leak in (KEY, key_digest(KEY).hex(), hashlib.sha256(KEY.encode()).hexdigest()):
        assert leak not in value and leak not in cookie
    page = client.get(PAGE)
    assert page.status_code == 200 and seeded.good in page.text
    assert "ops@example.com" in page.text


def test_over_https_the_cookie_is_secure(fleet: Fleet) -> None:
    client = browser(fleet, base_url="https://testserver")
    answer = log_in(client, KEY, origin="https://testserver")
    assert answer.status_code == 303
    assert "secure" in {p.strip().lower() for p in answer.headers["set-cookie"].split(";")}


@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-Proto": "https"},
        {"X-Forwarded-Proto": "https, http"},
        {"Forwarded": "for=10.0.0.1;proto=https;host=backups.example.com"},
    ],
)
def test_behind_a_proxy_that_ended_tls_the_cookie_is_secure(
    fleet: Fleet, header: dict[str, str]
) -> None:
    """Second review, finding 12: a proxy ending TLS (an ingress outside FORWARDED_ALLOW_IPS)
    reached the API over http, and the cookie went out without Secure."""
    client = browser(fleet)
    answer = client.post(LOGIN, data={"key": KEY}, headers={"Origin": ORIGIN, **header})
    assert answer.status_code == 303
    assert "secure" in {p.strip().lower() for p in answer.headers["set-cookie"].split(";")}


@pytest.mark.parametrize(
    "origin", [None, "null", "http://evil.example", "http://testserver.evil.example", "http://x"]
)
def test_the_login_form_is_taken_only_from_this_host(fleet: Fleet, origin: str | None) -> None:
    client = browser(fleet)
    headers = {} if origin is None else {"Origin": origin}
    answer = client.post(LOGIN, data={"key": KEY}, headers=headers)
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers and not client.cookies


@pytest.mark.parametrize("key", ["", "not-a-key", f"{KEY}x", f"Bearer {KEY}x"])
def test_a_wrong_key_sets_no_session(fleet: Fleet, key: str) -> None:
    client = browser(fleet)
    answer = log_in(client, key)
    assert answer.status_code == 401 and "invalid API key" in answer.text
    assert "set-cookie" not in answer.headers
    assert key not in answer.text or not key  # the form does not echo what was typed


def test_a_key_without_the_read_role_may_not_sign_in_nor_read(fleet: Fleet) -> None:
    client = browser(fleet)
    answer = log_in(client, NO_READ_KEY)
    assert answer.status_code == 403 and "`read` role" in answer.text
    assert "set-cookie" not in answer.headers
    page = client.get(PAGE, headers={"Authorization": NO_READ_KEY})
    assert page.status_code == 403 and "`read` role" in page.text


def test_the_cookie_opens_the_page_only(fleet: Fleet, seeded: Seeded) -> None:
    """No JSON route and no POST takes it: another site cannot make a signed-in browser
    act, and a script (there is none) could not use it for more than the page."""
    client = signed_in(fleet)
    cookie = {"Cookie": f"{COOKIE}={client.cookies[COOKIE]}"}
    enqueue = RecordingEnqueue()
    bare = TestClient(create_app(lambda: fleet, enqueue), follow_redirects=False)
    assert bare.get(PAGE, headers=cookie).status_code == 200
    for method, path in (
        ("GET", "/athena/api/v1/backups"),
        ("GET", "/athena/api/v1/backup/latest"),
        ("POST", "/athena/api/v1/ondemandbackup"),
        ("POST", PAGE),
    ):
        answer = bare.request(method, path, headers=cookie)
        assert answer.status_code in (401, 405), (method, path, answer.status_code)
    assert enqueue.calls == []


def test_a_forged_tampered_or_expired_session_goes_back_to_the_form(fleet: Fleet) -> None:
    secret = session_secret(fleet.settings)
    assert secret is not None
    (key,) = [k for k in fleet.settings.api_keys if k.key == KEY]
    now = int(time.time())
    good = issue(secret, key, now=now)
    version, expiry, key_id, mac = good.split(".")
    later = str(int(expiry) + 3600)
    for token in (
        issue(secret, key, now=now - SESSION_SECONDS - 1),  # expired
        f"{version}.{later}.{key_id}.{mac}",  # expiry pushed out
        issue(b"another secret of thirty-two bytes", key, now=now),  # signed elsewhere
        good[:-2],
        "v1",
        KEY,  # the key itself is no session
        "",
    ):
        client = browser(fleet)
        answer = client.get(PAGE, headers={"Cookie": f"{COOKIE}={token}"})
        assert answer.status_code == 303 and answer.headers["location"] == LOGIN, token
    client = browser(fleet)
    assert client.get(PAGE, headers={"Cookie": f"{COOKIE}={good}"}).status_code == 200


def test_the_only_clear_key_cannot_sign_a_session_for_a_key_of_the_keys_file(
    tmp_path: Path, fleet: Fleet
) -> None:
    """With one clear key (a scoped one, say CI's) and the admin keys in the keys file, the
    derived secret is that one key's: its holder knows it, and a keys file's hashes are all
    else a session names. A derived secret must sign sessions for clear keys only."""
    ci = with_settings(
        fleet, backfleet_api_keys=SecretStr(f"{APP_KEY}:ci@example.com:acme:app:read")
    )
    secret = session_secret(ci.settings)
    assert secret is not None
    (admin,) = [k for k in ci.settings.api_keys if not k.key]  # the keys file's, every namespace
    forged = issue(secret, admin, now=int(time.time()))
    answer = browser(ci).get(PAGE, headers={"Cookie": f"{COOKIE}={forged}"})
    assert answer.status_code == 303 and answer.headers["location"] == LOGIN
    refused = log_in(browser(ci), FILE_KEY)
    assert refused.status_code == 403 and "BACKFLEET_UI_SECRET" in refused.text
    assert COOKIE not in refused.headers.get("set-cookie", "")
    # With a secret of its own, the keys file's key may sign in.
    fixed = with_settings(ci, backfleet_ui_secret=SecretStr("s" * 40))
    assert log_in(browser(fixed), FILE_KEY).status_code == 303


def test_a_key_taken_out_of_the_settings_ends_its_sessions(fleet: Fleet) -> None:
    fixed = with_settings(fleet, backfleet_ui_secret=SecretStr("s" * 40))
    client = signed_in(fixed, APP_KEY)
    assert client.get(PAGE).status_code == 200
    without = with_settings(fixed, backfleet_api_keys=SecretStr(f"{KEY}:ops@example.com:acme"))
    again = browser(without)
    again.cookies.set(COOKIE, client.cookies[COOKIE])
    assert again.get(PAGE).headers["location"] == LOGIN


def test_logging_out_clears_the_cookie(fleet: Fleet) -> None:
    client = signed_in(fleet)
    refused = client.post(LOGOUT, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403 and client.get(PAGE).status_code == 200
    answer = client.post(LOGOUT, headers={"Origin": ORIGIN})
    assert answer.status_code == 303 and answer.headers["location"] == LOGIN
    assert "max-age=0" in answer.headers["set-cookie"].lower()
    assert client.get(PAGE).status_code == 303


def test_without_a_secret_to_sign_with_the_form_says_what_to_set(fleet: Fleet) -> None:
    hashed_only = with_settings(fleet, backfleet_api_keys=SecretStr(""))
    client = browser(hashed_only)
    assert "BACKFLEET_UI_SECRET" in client.get(LOGIN).text
    answer = log_in(client, FILE_KEY)
    assert answer.status_code == 503 and "BACKFLEET_UI_SECRET" in answer.text
    assert client.get(PAGE, headers={"Authorization": FILE_KEY}).status_code == 200
    with_secret = with_settings(hashed_only, backfleet_ui_secret=SecretStr("u" * 32))
    assert log_in(browser(with_secret), FILE_KEY).status_code == 303


def test_a_short_session_secret_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        Settings(backfleet_ui_secret=SecretStr("too short"))
    assert Settings(backfleet_ui_secret=SecretStr("x" * 32)).backfleet_ui_secret is not None


def test_a_login_leaves_no_key_in_the_audit_trail(fleet: Fleet) -> None:
    """A key of the keys file is known only to its holder: not even its login is recorded."""
    with_secret = with_settings(fleet, backfleet_ui_secret=SecretStr("t" * 32))
    client = browser(with_secret)
    assert log_in(client, FILE_KEY).status_code == 303
    assert log_in(client, "mistyped-" + FILE_KEY).status_code == 401
    assert client.get(PAGE).status_code == 200
    assert recorder.drain()
    with session_scope(fleet.settings.database_url) as session:
        events = list(session.scalars(select(UserEvent).order_by(UserEvent.id)))
        recorded = [(e.name_hints, e.user_email, e.request_payload) for e in events]
        text = repr([(e.request_params, e.request_payload) for e in events])
    assert FILE_KEY not in text
    assert (["CatalogPageLogin"], "file@example.com") in [(h, u) for h, u, _ in recorded]
    assert (["CatalogPage"], "file@example.com") in [(h, u) for h, u, _ in recorded]


# --- what it shows, and how ---


def test_the_page_shows_backups_drills_rto_and_open_alerts(fleet: Fleet, seeded: Seeded) -> None:
    page = signed_in(fleet).get(PAGE).text
    for stamp in (seeded.good, seeded.failed, seeded.running, seeded.team_b):
        assert stamp in page
    for words in ("Namespace app", "Namespace team-b", "met RTO", "missed RTO", "never drilled"):
        assert words in page
    assert "5 h 00 min &gt; 4 h 00 min" in page  # gitserver's drill, beyond its RTO
    assert "132.1 MiB" in page and "1 min 22 s" in page  # the good backup's size, duration
    assert "size anomaly" in page and "post hook of gitserver: exit 1" in page
    assert "team-b&#x27;s own alert" in page
    assert "a resolved alert, not shown" not in page


def test_every_value_is_escaped_and_nothing_runs_or_loads(fleet: Fleet, seeded: Seeded) -> None:
    answer = signed_in(fleet).get(PAGE)
    page = answer.text
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;script&gt;alert(&quot;catalog&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    found = markup(page)
    assert "script" not in found.tags and "img" not in found.tags and "b" not in found.tags
    assert not [name for name in found.attributes if name.startswith("on")]
    assert resource_urls(page) == [] and other_hosts(page, ORIGIN) == []
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert answer.headers["cache-control"] == "no-store"
    assert SCRIPT_ERROR not in page and ALERT_TEXT not in page  # only their escaped forms


def test_a_scoped_key_sees_its_namespaces_only(fleet: Fleet, seeded: Seeded) -> None:
    client = signed_in(fleet, APP_KEY)
    page = client.get(PAGE).text
    assert seeded.good in page and "Namespace app" in page
    assert "team-b" not in page and seeded.team_b not in page
    for asked in ("team-b", "old-cluster"):
        refused = client.get(PAGE, params={"namespace": asked})
        assert refused.status_code == 403 and asked not in refused.text


def test_one_namespace_and_one_service(fleet: Fleet, seeded: Seeded) -> None:
    client = signed_in(fleet)
    app = client.get(PAGE, params={"namespace": "app"}).text
    assert "Namespace app" in app and "Namespace team-b" not in app
    postgres = client.get(PAGE, params={"namespace": "app", "service": "postgres"}).text
    assert "Only service <b>postgres</b>" in postgres
    assert ">gitserver</a>" not in postgres and seeded.failed in postgres
    missing = client.get(PAGE, params={"namespace": "old-cluster"})
    assert missing.status_code == 404 and "not configured" in missing.text

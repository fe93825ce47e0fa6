"""The API's docs: /docs and /redoc load nothing from another host, and the OpenAPI
document says, for every operation, what it does, what it needs and how it can fail.

(tests/integration/test_api_docs_browser.py loads the pages in a real browser, offline.)
"""

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from api.audit import OPERATIONS
from api.main import create_app
from api.openapi import TAGS
from api.schemas import DNS_LABEL_SCHEMA, TIMESTAMP_SCHEMA
from api.scopes import ROLE_OF
from api.userevents import MAX_EVENTS
from tests.unit.test_api import RecordingEnqueue, make_fleet
from workers.catalog.db import dispose_engines
from workers.services_config import DNS_LABEL
from workers.timestamps import is_timestamp

KEY = "docs-key-5f1e"
ORIGIN = "http://testserver"  # TestClient's
PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")
# What an /athena route may answer besides its success, and why (api/errors.py, api/auth.py,
# api/limits.py): anything else listed is a copy-paste, not a behaviour.
PLAUSIBLE_ERRORS = {"400", "401", "403", "404", "409", "413", "422", "503"}
EVERY_ATHENA_ROUTE_MAY = {"401", "403", "422", "503"}  # key, scope, parameters, configuration


class ResourceUrls(HTMLParser):
    """The URLs a browser loads for a page: scripts, style sheets, icons, images, frames."""

    LOADED = {"script": "src", "img": "src", "iframe": "src", "link": "href", "source": "src"}

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = self.LOADED.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)
            if name in ("srcset", "style") and value and re.search(r"https?:|//", value):
                self.urls.append(value)  # an image set or url(...) naming another host


def resource_urls(html: str) -> list[str]:
    parser = ResourceUrls()
    parser.feed(html)
    return parser.urls


def other_hosts(html: str, origin: str) -> list[str]:
    """Every resource URL of the page that is not on `origin`."""
    own = urlsplit(origin).netloc
    return [url for url in resource_urls(html) if urlsplit(urljoin(origin, url)).netloc != own]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    fleet = make_fleet(tmp_path_factory.mktemp("docs"), KEY)
    with TestClient(create_app(lambda: fleet, RecordingEnqueue())) as client:
        yield client
    dispose_engines()


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    return dict(client.get("/openapi.json").json())


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


# --- the pages ---


@pytest.mark.parametrize("page", PAGES)
def test_the_docs_pages_load_nothing_from_another_host(client: TestClient, page: str) -> None:
    response = client.get(page)  # no API key: as /openapi.json, the docs need none
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert other_hosts(response.text, ORIGIN) == []
    for url in resource_urls(response.text):
        asset = client.get(url)  # served by the API itself, without a key
        assert asset.status_code == 200, url
        assert asset.content, url


def test_the_pages_load_the_ui_from_the_package(client: TestClient) -> None:
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(
        resource_urls(client.get("/docs").text)
    )
    assert "/docs/assets/redoc.standalone.js" in resource_urls(client.get("/redoc").text)
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
    assert "validatorUrl" in client.get("/docs").text  # never the online validator


def test_the_parser_sees_a_cdn() -> None:
    """The check above would catch FastAPI's own pages (what /docs was before)."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    for page in (
        get_swagger_ui_html(openapi_url="/openapi.json", title="t"),
        get_redoc_html(openapi_url="/openapi.json", title="t"),
    ):
        assert other_hosts(bytes(page.body).decode(), ORIGIN)


def test_behind_a_proxy_prefix_the_pages_name_their_assets_under_it(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, KEY)
    app = create_app(lambda: fleet, RecordingEnqueue())
    with TestClient(app, root_path="/backfleet") as client:
        for page in ("/docs", "/redoc"):
            urls = resource_urls(client.get(page).text)
            assert urls and all(url.startswith("/backfleet/docs/assets/") for url in urls), urls
        assert "'/backfleet/openapi.json'" in client.get("/docs").text


# --- the OpenAPI document ---


def test_every_operation_has_a_summary_a_description_and_a_tag(document: dict[str, Any]) -> None:
    tags = [tag["name"] for tag in document["tags"]]
    assert tags == [tag["name"] for tag in TAGS]
    assert all(tag.get("description") for tag in document["tags"])
    ids = []
    for method, path, operation in operations(document):
        where = f"{method} {path}"
        summary = operation.get("summary", "")
        assert summary and summary[0].isupper() and not summary.istitle(), where  # human words
        assert len(operation.get("description", "")) > len(summary), where
        assert len(operation.get("tags", [])) == 1 and operation["tags"][0] in tags, where
        ids.append(operation["operationId"])
    assert len(set(ids)) == len(ids)


def test_athena_operations_are_named_as_their_audit_events(document: dict[str, Any]) -> None:
    """An event's `nameHints` is the operationId of the call it records."""
    for method, path, operation in operations(document):
        if path.startswith("/athena/"):
            assert operation["operationId"] == OPERATIONS[(method, path)], path


def test_every_athena_operation_names_the_role_it_needs(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        if path.startswith("/athena/"):
            role = ROLE_OF[(method, path)]
            assert f"`{role}` role" in operation["description"], f"{method} {path}"
            other = {r for r in ("read", "backup", "restore", "ingest") if r != role}
            assert not any(f"`{r}` role" in operation["description"] for r in other)


def test_errors_are_only_those_a_route_can_answer(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        where = f"{method} {path}"
        codes = set(operation["responses"])
        errors = {code for code in codes if code >= "4"}
        successes = codes - errors
        assert len(successes) == 1, where
        if path.startswith("/athena/"):
            assert EVERY_ATHENA_ROUTE_MAY <= errors <= PLAUSIBLE_ERRORS, where
        else:  # health and metrics: no key, no parameters
            assert errors <= {"503"}, where
        # Only a route that reads a body can find it too large.
        assert ("413" in errors) == ("requestBody" in operation), where
        for code in errors:
            answer = operation["responses"][code]
            assert answer["description"] and answer["description"] != "Not found", where
            assert "content" in answer, f"{where} {code}: its body is JSON"


def test_the_errors_before_the_change_are_still_listed(document: dict[str, Any]) -> None:
    """Clients read these from the document: none that the route can give has gone."""
    for method, path, operation in operations(document):
        if path.startswith("/athena/"):
            assert {"401", "403", "404", "422"} <= set(operation["responses"]), f"{method} {path}"
    for path in ("ondemandbackup", "ondemandrestore"):
        assert "409" in document["paths"][f"/athena/api/v1/{path}"]["post"]["responses"]


def _parameter(operation: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [p for p in operation.get("parameters", []) if p["name"] == name]
    schema = found["schema"]
    strings = [s for s in schema.get("anyOf", [schema]) if s.get("type") == "string"]
    return dict(strings[0])


def test_timestamps_and_names_carry_their_patterns(document: dict[str, Any]) -> None:
    paths = document["paths"]
    detail = paths["/athena/api/v1/backup/{timestamp}"]["get"]
    timestamp = _parameter(detail, "timestamp")
    assert timestamp["pattern"] == TIMESTAMP_SCHEMA["pattern"]
    assert timestamp["examples"] == ["2023-02-02t17-03-15"]
    status = _parameter(paths["/athena/api/v1/restorestatus"]["get"], "timestamp")
    assert status["pattern"] == timestamp["pattern"]
    for method, path, operation in operations(document):
        if any(p["name"] == "namespace" for p in operation.get("parameters", [])):
            namespace = _parameter(operation, "namespace")
            assert namespace["pattern"] == DNS_LABEL_SCHEMA["pattern"], f"{method} {path}"
            assert namespace["maxLength"] == 63

    restore = paths["/athena/api/v1/ondemandrestore"]["post"]["requestBody"]
    fields = restore["content"]["application/json"]["schema"]["properties"]
    (stamp,) = [s for s in fields["timestamp"]["anyOf"] if s.get("type") == "string"]
    assert stamp["pattern"] == TIMESTAMP_SCHEMA["pattern"]  # optional with a targetTime
    (moment,) = [s for s in fields["targetTime"]["anyOf"] if s.get("type") == "string"]
    assert moment["format"] == "date-time"
    for name in ("sourceNamespace", "namespace"):
        (label,) = [s for s in fields[name]["anyOf"] if s.get("type") == "string"]
        assert label["pattern"] == DNS_LABEL_SCHEMA["pattern"], name
    (services,) = [s for s in fields["svcs"]["anyOf"] if s.get("type") == "object"]
    assert list(services["patternProperties"]) == [DNS_LABEL_SCHEMA["pattern"]]
    assert all(field.get("description") for field in fields.values())


def test_body_limits_are_in_the_document(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for path, method in (
        ("ondemandbackup", "post"),
        ("ondemandrestore", "post"),
        ("restorestatus", "get"),
    ):
        operation = paths[f"/athena/api/v1/{path}"][method]
        assert "1 MiB" in operation["requestBody"]["description"], path
        assert "1 MiB" in operation["responses"]["413"]["description"], path
    events = paths["/athena/api/v1/userevents"]["post"]
    assert events["requestBody"]["content"]["application/json"]["schema"]["maxItems"] == MAX_EVENTS
    assert "10 MiB" in events["responses"]["413"]["description"]
    assert "1 MiB" in document["info"]["description"]


@pytest.mark.parametrize(
    "value",
    ["app", "a", "0", "team-b", "a" * 63, "a" * 64, "-a", "a-", "A", "a_b", "a.b", "", "é"],
)
def test_the_name_pattern_is_the_validators(value: str) -> None:
    documented = re.fullmatch(DNS_LABEL_SCHEMA["pattern"].strip("^$"), value) is not None
    length_ok = DNS_LABEL_SCHEMA["minLength"] <= len(value) <= DNS_LABEL_SCHEMA["maxLength"]
    assert (documented and length_ok) == bool(DNS_LABEL.match(value))


@pytest.mark.parametrize(
    "value",
    [
        "2023-02-02t17-03-15",
        "1999-12-31t23-59-59",
        "2023-02-02T17-03-15",
        "2023-02-02 17:03:15",
        "2023-2-2t17-03-15",
        "yesterday",
        "2023-02-02t17-03-15Z",
    ],
)
def test_every_timestamp_the_api_takes_matches_the_documented_pattern(value: str) -> None:
    """The pattern is the form; the validator also refuses a month 13 (a 422 as before)."""
    documented = re.fullmatch(TIMESTAMP_SCHEMA["pattern"].strip("^$"), value) is not None
    assert documented == is_timestamp(value)


def test_validation_still_answers_with_the_validators_words(client: TestClient) -> None:
    """The patterns are documentation: the 422s keep their messages."""
    auth = {"Authorization": KEY}
    bad_time = client.get("/athena/api/v1/backup/2023-13-02t17-03-15", headers=auth)
    assert bad_time.status_code == 422
    assert bad_time.json()["message"].startswith("timestamp: must be a backup timestamp like")
    bad_name = client.get("/athena/api/v1/backup/latest?namespace=Team_B", headers=auth)
    assert bad_name.status_code == 422
    assert bad_name.json()["message"].startswith("namespace: must be a DNS label")
    query = client.get("/athena/api/v1/restorestatus?timestamp=latest", headers=auth)
    assert query.json()["message"].startswith("timestamp: must be a backup timestamp like")


def test_the_document_is_valid_json_without_dangling_references(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    for ref in set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text)):
        assert ref in document["components"]["schemas"], ref
    assert "#/$defs/" not in text

import json

import pytest

from workers.redact import MASK, redact, url_password_forms


def test_url_passwords_are_masked() -> None:
    text = "could not connect to postgresql://backup:hunter22@db:5432/app"
    assert redact(text) == "could not connect to postgresql://backup:***@db:5432/app"


def test_key_value_pairs_and_known_secrets_are_masked() -> None:
    text = "password=abc123 host=db token: xyz; also mysecretkey here"
    out = redact(text, ["mysecretkey"])
    assert "abc123" not in out and "xyz" not in out and "mysecretkey" not in out
    assert "host=db" in out


def test_plain_text_is_unchanged() -> None:
    assert redact("pg_dump failed: relation missing") == "pg_dump failed: relation missing"


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://u:p@ss/w@rd@host/db failed",
        "redis://:s3cr/et@@127.0.0.1:6379/0 refused",
        "url='mysql://root:a/b@c@db:3306/x'",
    ],
)
def test_a_url_password_with_a_slash_or_an_at_sign_is_masked_whole(text: str) -> None:
    out = redact(text)
    for piece in ("p@ss", "w@rd", "s3cr", "et@", "a/b@c"):
        assert piece not in out
    assert MASK in out


def test_the_host_after_a_masked_url_password_stays() -> None:
    assert redact("postgresql://u:p@ss/w@rd@host/db") == "postgresql://u:***@host/db"


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"user": "app", "password": "Tr0ub4dor&3 x"}),
        json.dumps({"db_password": "Tr0ub4dor&3"}),
        "{'password': 'Tr0ub4dor&3'}",
        "password: Tr0ub4dor&3",
        "PASSWORD=Tr0ub4dor&3",
        "PGPASSWORD=Tr0ub4dor&3 psql",
        'client_secret="Tr0ub4dor&3"',
        "X-Api-Key: Tr0ub4dor&3",
    ],
)
def test_password_fields_in_json_and_assignments_are_masked(text: str) -> None:
    out = redact(text)
    assert "Tr0ub4dor" not in out and MASK in out


def test_json_stays_json_after_redaction() -> None:
    out = redact(json.dumps({"password": "x y z", "user": "app"}))
    assert json.loads(out) == {"password": MASK, "user": "app"}


def test_azure_connection_string_keys_are_masked() -> None:
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    text = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={key};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    )
    out = redact(text)
    assert key not in out and "Eby8vdM02" not in out
    assert "AccountName=devstoreaccount1" in out and "BlobEndpoint=http://127.0.0.1" in out


@pytest.mark.parametrize(
    "text",
    [
        "BlobEndpoint=https://a.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b"
        "&sig=AbCdEf0123456789%2BXyZ%3D",
        "GET https://a.blob.core.windows.net/c/x?sv=2022-11-02&sp=r&sig=AbCdEf0123456789%2BXyZ%3D",
        "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKey=AbCdEf0123456789+XyZ=",
    ],
)
def test_sas_tokens_are_masked(text: str) -> None:
    out = redact(text)
    assert "AbCdEf0123456789" not in out and MASK in out


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "authorization=Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "headers {'Authorization': 'Basic eyJhbGciOiJIUzI1NiJ9'}",
        "Authorization: eyJhbGciOiJIUzI1NiJ9.opaque",
    ],
)
def test_authorization_headers_are_masked(text: str) -> None:
    out = redact(text)
    assert "eyJhbGciOiJIUzI1NiJ9" not in out and MASK in out


def test_url_password_forms_cover_raw_decoded_and_pieces() -> None:
    forms = url_password_forms("postgresql://u:p%40ssw0rd/long-piece@wo@host/db")
    assert "p%40ssw0rd/long-piece@wo" in forms
    assert "p@ssw0rd/long-piece@wo" in forms
    assert "long-piece" in forms
    assert url_password_forms("postgresql://u@host/db") == []
    assert url_password_forms(None) == []


def test_a_json_number_or_boolean_secret_becomes_a_masked_string() -> None:
    out = redact(json.dumps({"token": 123456, "api_key": True, "n": 1}))
    assert json.loads(out) == {"token": MASK, "api_key": MASK, "n": 1}


def test_connection_strings_are_stripped() -> None:
    from workers.redact import strip_connection_strings

    text = (
        "cannot use postgresql://app:p@ss/w@rd@db:5432/app nor "
        "host=db port=5432 user=app password='x y' dbname=app; retry"
    )
    out = strip_connection_strings(text)
    assert out == "cannot use <connection URL> nor <connection string>; retry"
    assert strip_connection_strings("exit 2: a=b is fine") == "exit 2: a=b is fine"


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"accessKeyId": "AKIA", "secretAccessKey": "Tr0ub4dor&3"}),  # AWS, rclone
        json.dumps({"secretKey": "Tr0ub4dor&3"}),  # MinIO
        json.dumps({"clientSecret": "Tr0ub4dor&3"}),
        "dbPassword=Tr0ub4dor&3",
        "private_key: Tr0ub4dor&3",
        "Authorization: Bearer Tr0",  # a short key is a key too
        "authorization=Bearer Tr0",
    ],
)
def test_camel_case_names_and_short_bearer_keys_are_masked(text: str) -> None:
    out = redact(text)
    assert "Tr0" not in out and MASK in out


@pytest.mark.parametrize("text", ["pg_dump killed by signal: 9", "designs=3", "keyboard: us"])
def test_camel_case_matching_leaves_ordinary_words(text: str) -> None:
    assert redact(text) == text


def test_postgres_password_hashes_are_masked_unknown() -> None:
    scram = "SCRAM-SHA-256$4096:c2FsdA==$U3RvcmVkS2V5:U2VydmVyS2V5"
    md5 = "md5" + "0123456789abcdef" * 2
    out = redact(f"ERROR: CREATE ROLE a PASSWORD '{scram}'; CREATE ROLE b PASSWORD '{md5}'")
    assert "c2FsdA" not in out and "U3RvcmVk" not in out and "0123456789" not in out
    assert out.count(MASK) == 2

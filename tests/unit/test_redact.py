from workers.redact import redact


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

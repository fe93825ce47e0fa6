"""Scrub secrets from any text bound for a log, an error message or the catalog."""

import re
from collections.abc import Iterable

MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]*(?P<tail>@)")
_KEY_VALUE = re.compile(
    r"(?i)(?P<head>\b(?:password|passwd|pwd|secret|token|access_?key|api_?key|sig)\s*[=:]\s*)"
    r"(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,]+)"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask URL passwords, `password=…`-style pairs, and every known secret value."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)
    text = _KEY_VALUE.sub(lambda m: f"{m['head']}{MASK}", text)
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text

"""MkDocs hooks (`hooks:` in mkdocs.yml), so Markdown written for GitHub reads the same on
the site. Loaded by MkDocs from this file's path; nothing imports it."""

import re

_CELL = re.compile(r"<td\b[^>]*>.*?</td>", re.S)
_CODE = re.compile(r"<code>(.*?)</code>", re.S)


def on_page_content(html: str, **_: object) -> str:
    """A pipe in a code span of a table cell is `\\|` for GitHub, which Python-Markdown keeps
    as it is (it already knows a code span's pipe is no cell border): drop the backslash."""
    return _CELL.sub(lambda cell: _CODE.sub(_unescape_pipes, cell.group(0)), html)


def _unescape_pipes(code: re.Match[str]) -> str:
    return "<code>" + code.group(1).replace("\\|", "|") + "</code>"

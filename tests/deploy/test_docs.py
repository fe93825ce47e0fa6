"""The README's architecture picture and its rendered copy stay one diagram."""

from tests.deploy.known import ROOT


def test_the_readme_diagram_is_the_rendered_one() -> None:
    """README's Mermaid block and docs/architecture.mmd (rendered to docs/architecture.svg)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```mermaid\n", 1)[1].split("```\n", 1)[0]
    assert block == (ROOT / "docs" / "architecture.mmd").read_text()
    assert (ROOT / "docs" / "architecture.svg").read_text().startswith("<svg")

"""The architecture picture stays one diagram, and every setting is documented."""

from tests.deploy.known import ROOT, reference_rows, settings_variables

MMD = ROOT / "docs" / "architecture.mmd"


def test_the_readme_diagram_is_the_rendered_one() -> None:
    """README's Mermaid block and docs/architecture.mmd (rendered to docs/architecture.svg)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```mermaid\n", 1)[1].split("```\n", 1)[0]
    assert block == MMD.read_text()
    assert (ROOT / "docs" / "architecture.svg").read_text().startswith("<svg")


def test_the_architecture_page_shows_the_same_diagram() -> None:
    """docs/fleet.md shows the SVG and includes the Mermaid source itself (a snippet)."""
    page = (ROOT / "docs" / "fleet.md").read_text()
    assert "](architecture.svg)" in page
    assert '```mermaid\n    --8<-- "docs/architecture.mmd"\n    ```' in page


def test_every_setting_is_in_the_reference_with_a_meaning() -> None:
    rows = reference_rows()
    missing = settings_variables() - set(rows)
    assert missing == set(), f"run `make docs`: the settings reference lacks {sorted(missing)}"
    blank = sorted(name for name in settings_variables() if not rows[name].strip())
    assert blank == [], f"give these a Field(description=...) in workers/settings/: {blank}"

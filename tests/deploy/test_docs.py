"""The README's architecture picture and its rendered copy stay one diagram."""

from tests.deploy.known import ROOT


def test_the_readme_diagram_is_the_rendered_one() -> None:
    """README's Mermaid block and docs/architecture.mmd (rendered to docs/architecture.svg)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```mermaid\n", 1)[1].split("```\n", 1)[0]
    assert block == (ROOT / "docs" / "architecture.mmd").read_text()
    assert (ROOT / "docs" / "architecture.svg").read_text().startswith("<svg")


def test_every_setting_is_in_the_readme_table() -> None:
    from tests.deploy.known import readme_settings_variables, settings_variables

    missing = settings_variables() - readme_settings_variables()
    assert missing == set(), f"add these to the README's settings table: {sorted(missing)}"

"""The Dockerfile: multi-stage, unprivileged, a healthcheck, one entry point for every role."""

import re

from click.testing import CliRunner

from tests.deploy.known import ROOT
from workers.cli import main

DOCKERFILE = (ROOT / "Dockerfile").read_text()
ROLES = ("api", "worker", "beat", "flower", "migrate")


def instructions(name: str) -> list[str]:
    return re.findall(rf"^{name}\s+(.+)$", DOCKERFILE, flags=re.MULTILINE)


def test_multi_stage_with_build_arguments_and_labels() -> None:
    assert len(instructions("FROM")) == 2
    assert "COPY --from=build /opt/backfleet /opt/backfleet" in DOCKERFILE
    arguments = {line.split("=")[0] for line in instructions("ARG")}
    assert {"PYTHON_VERSION", "DEBIAN_RELEASE", "PG_MAJOR", "VERSION", "REVISION"} <= arguments
    for label in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{label}=" in DOCKERFILE


def test_runs_unprivileged_with_a_healthcheck_and_tini() -> None:
    assert instructions("USER") == ["10001:10001"]
    assert 'CMD ["python", "-m", "workers.healthcheck"]' in DOCKERFILE
    assert instructions("ENTRYPOINT") == ['["tini", "--", "backfleet"]']


def test_the_postgres_client_major_is_the_one_the_readme_states() -> None:
    (default,) = [line for line in instructions("ARG") if line.startswith("PG_MAJOR=")]
    major = default.split("=")[1]
    readme = (ROOT / "README.md").read_text()
    assert f"PostgreSQL {major} client tools" in readme
    assert "postgresql-client-${PG_MAJOR}" in DOCKERFILE


def test_every_role_is_a_command_of_the_cli() -> None:
    for role in ROLES:
        result = CliRunner().invoke(main, [role, "--help"])
        assert result.exit_code == 0, role


def test_dockerignore_lets_in_exactly_what_the_image_copies() -> None:
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied: set[str] = set()
    for line in instructions("COPY"):
        if "--from" not in line:
            copied.update(line.split()[:-1])
    assert copied == allowed
    assert all((ROOT / name).exists() for name in allowed)

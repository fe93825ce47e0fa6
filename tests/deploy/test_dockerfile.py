"""The Dockerfile, read by BuildKit's own parser (the `dockerfile` package): multi-stage,
unprivileged, a healthcheck, the stated PostgreSQL client, one entry point for every role."""

import dockerfile
from click.testing import CliRunner

from tests.deploy.known import ROOT
from workers.cli import main

COMMANDS = dockerfile.parse_file(str(ROOT / "Dockerfile"))
ROLES = ("api", "worker", "beat", "flower", "migrate")


def values(cmd: str) -> list[tuple[str, ...]]:
    return [command.value for command in COMMANDS if command.cmd.upper() == cmd]


def runtime_stage() -> list["dockerfile.Command"]:
    starts = [i for i, command in enumerate(COMMANDS) if command.cmd.upper() == "FROM"]
    return list(COMMANDS[starts[-1] :])


def test_multi_stage_with_build_arguments_and_labels() -> None:
    assert [value[-1] for value in values("FROM")] == ["build", "runtime"]
    copies = [c for c in runtime_stage() if c.cmd.upper() == "COPY"]
    assert [(c.flags, c.value) for c in copies] == [
        (("--from=build",), ("/opt/backfleet", "/opt/backfleet"))
    ]
    arguments = {value[0].split("=")[0] for value in values("ARG")}
    assert {"PYTHON_VERSION", "DEBIAN_RELEASE", "PG_MAJOR", "VERSION", "REVISION", "CREATED"} <= (
        arguments
    )
    (label,) = values("LABEL")
    names = set(label[0::2])
    for name in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{name}" in names
    # The base's name comes from an ARG re-declared in the runtime stage (a global ARG
    # is empty there, and the python image's ENV PYTHON_VERSION would shadow it).
    base = dict(zip(label[0::2], label[1::2], strict=True))["org.opencontainers.image.base.name"]
    assert base.strip('"') == "${BASE_IMAGE}"
    assert ("BASE_IMAGE",) in [c.value for c in runtime_stage() if c.cmd.upper() == "ARG"]
    assert {value[0] for value in values("FROM")} == {"${BASE_IMAGE}"}


def test_runs_unprivileged_with_a_healthcheck_and_tini() -> None:
    assert values("USER") == [("10001:10001",)]
    (healthcheck,) = [c for c in COMMANDS if c.cmd.upper() == "HEALTHCHECK"]
    assert healthcheck.value == ("CMD", "python", "-m", "workers.cli.healthcheck")
    assert values("ENTRYPOINT") == [("tini", "--", "backfleet")]
    assert values("CMD") == [("api",)]


def test_the_postgres_client_major_is_the_one_the_readme_states() -> None:
    (default,) = [value[0] for value in values("ARG") if value[0].startswith("PG_MAJOR=")]
    major = default.split("=")[1]
    assert f"PostgreSQL {major} client tools" in (ROOT / "README.md").read_text()
    installs = " ".join(value[0] for value in values("RUN"))
    assert '"postgresql-client-${PG_MAJOR}"' in installs
    (path,) = [value for value in values("ENV") if value[0] == "PATH"]
    assert "/usr/lib/postgresql/${PG_MAJOR}/bin" in path[1]


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
    copied = {
        source
        for c in COMMANDS
        if c.cmd.upper() == "COPY" and not c.flags
        for source in c.value[:-1]
    }
    assert copied == allowed
    assert all((ROOT / name).exists() for name in allowed)

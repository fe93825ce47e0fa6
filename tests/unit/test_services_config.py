from pathlib import Path

import pytest

from workers.errors import ConfigError
from workers.services_config import load_fleet_config, parse_fleet_config

SINGLE = """
namespace = "prod"
[services.postgres]
kind = "postgres"
url = "postgresql://backup:pw@db:5432/app"
[services.gitserver]
kind = "directory"
path = "/data/git"
config = true
schedule = "0 3 * * *"
[services.metagraph]
kind = "sqlite"
path = "/data/graph.db"
"""


def test_single_namespace_file() -> None:
    config = parse_fleet_config(SINGLE)
    assert config.default_namespace == "prod"
    services = config.services_of("prod")
    assert sorted(services) == ["gitserver", "metagraph", "postgres"]
    assert services["gitserver"].config is True
    assert services["gitserver"].name == "gitserver"
    assert "pw" not in repr(services["postgres"])


def test_environment_namespace_wins() -> None:
    config = parse_fleet_config(SINGLE, namespace_override="staging")
    assert list(config.namespaces) == ["staging"]


def test_many_namespaces() -> None:
    config = parse_fleet_config(
        """
        namespace = "team-b"
        [namespaces.team-a.services.db]
        kind = "sqlite"
        path = "/a.db"
        [namespaces.team-b.services.files]
        kind = "directory"
        path = "/b"
        """
    )
    assert config.default_namespace == "team-b"
    assert sorted(config.namespaces) == ["team-a", "team-b"]
    with pytest.raises(ConfigError, match="team-c"):
        config.services_of("team-c")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[services.db]\nkind = "postgres"\n', "needs `url`"),
        ('[services.db]\nkind = "oracle"\npath = "/x"\n', "kind"),
        ('[services.Bad_Name]\nkind = "sqlite"\npath = "/x"\n', "DNS label"),
        ('namespace = "../etc"\n[services.db]\nkind = "sqlite"\npath = "/x"\n', "DNS label"),
        ('[services.db]\nkind = "sqlite"\npath = "/x"\ncolour = "red"\n', "colour"),
        ('[services.db]\nkind = "sqlite"\npath = "/x"\nschedule = "daily"\n', "5 fields"),
        ("not toml [", "not valid TOML"),
        ("", "either"),
    ],
)
def test_bad_files_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_fleet_config(text)


def test_missing_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BACKFLEET_CONFIG"):
        load_fleet_config(tmp_path / "absent.toml")

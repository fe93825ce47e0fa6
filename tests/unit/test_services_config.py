from pathlib import Path

import pytest

from workers.errors import ConfigError
from workers.services_config import load_fleet_config, parse_fleet_config
from workers.sources.directory import DirectorySource

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


COMMAND = """
[services.mariadb]
kind = "command"
dump_command = ["mysqldump", "--single-transaction", "--databases", "app"]
restore_command = ["mysql"]
"""


def test_command_service_defaults() -> None:
    spec = parse_fleet_config(COMMAND).services_of("app")["mariadb"]
    assert spec.kind == "command"
    assert spec.dump_command == ["mysqldump", "--single-transaction", "--databases", "app"]
    assert spec.restore_command == ["mysql"]
    assert (spec.format, spec.fail_on_stderr, spec.password_env) == (None, True, None)


def test_command_service_options() -> None:
    text = COMMAND + 'format = "sql"\nfail_on_stderr = false\npassword_env = "MYSQL_PWD"\n'
    spec = parse_fleet_config(text).services_of("app")["mariadb"]
    assert (spec.format, spec.fail_on_stderr, spec.password_env) == ("sql", False, "MYSQL_PWD")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[services.db]\nkind = "command"\nrestore_command = ["mysql"]\n', "needs `dump_command`"),
        (
            '[services.db]\nkind = "command"\n',
            "needs `dump_command` and `restore_command`",
        ),
        (
            '[services.db]\nkind = "command"\ndump_command = []\nrestore_command = ["mysql"]\n',
            "dump_command: must name a program to run",
        ),
        (
            '[services.db]\nkind = "command"\ndump_command = ["x"]\nrestore_command = [""]\n',
            "restore_command: must name a program to run",
        ),
        (
            '[services.db]\nkind = "command"\ndump_command = "mysqldump app"\n'
            'restore_command = ["mysql"]\n',
            r"dump_command: must be a list of strings.*no shell",
        ),
        (
            '[services.db]\nkind = "command"\ndump_command = ["mysqldump", 3]\n'
            'restore_command = ["mysql"]\n',
            "dump_command: must be a list of strings",
        ),
        (COMMAND + 'format = "tar.gz"\n', "short word"),
        (COMMAND + 'format = "SQL"\n', "short word"),
        (COMMAND + 'format = ""\n', "short word"),
        (COMMAND + 'format = "../x"\n', "short word"),
        (COMMAND + 'path = "/x"\n', "takes no `url` or `path`"),
        (
            '[services.db]\nkind = "sqlite"\npath = "/x"\ndump_command = ["cat", "/x"]\n',
            r'`dump_command` is only for kind = "command", not sqlite',
        ),
        (
            '[services.db]\nkind = "directory"\npath = "/x"\nformat = "tar"\n'
            "fail_on_stderr = false\n",
            r"`format`, `fail_on_stderr` are only for kind = \"command\", not directory",
        ),
        (
            '[services.db]\nkind = "postgres"\nurl = "postgresql://x/y"\nrestore_command = ["x"]\n',
            "`restore_command` is only for",
        ),
    ],
)
def test_bad_command_services_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_fleet_config(text)


def test_env_names_the_variables_a_services_tools_get() -> None:
    config = parse_fleet_config(COMMAND + 'env = ["KUBECONFIG", "MYSQL_HOST"]\n')
    assert config.services_of("app")["mariadb"].env == ["KUBECONFIG", "MYSQL_HOST"]
    pg = '[services.pg]\nkind = "postgres"\nurl = "postgresql://h/db"\nenv = ["PGSSLROOTCERT"]\n'
    assert parse_fleet_config(pg).services_of("app")["pg"].env == ["PGSSLROOTCERT"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (COMMAND + 'env = "KUBECONFIG"\n', "env: must be a list of environment variable names"),
        (COMMAND + 'env = ["A=B", "1X"]\n', "'A=B', '1X': not environment variable names"),
        (COMMAND + 'password_env = "MY PWD"\n', "not an environment variable name"),
        (
            '[services.d]\nkind = "directory"\npath = "/x"\nenv = ["HOME"]\n',
            "`env` is only for command and postgres services, not directory",
        ),
    ],
)
def test_bad_env_lists_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_fleet_config(text)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://backup:p@ss/w0rdpiece@127.0.0.1:5432/app",
        "postgresql://backup:pw/w0rdpiece@127.0.0.1/app",
        "postgres://backup:pass w0rdpiece@127.0.0.1/app",
    ],
)
def test_a_postgres_url_libpq_would_misread_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError, match="percent-encode") as caught:
        parse_fleet_config(f'[services.pg]\nkind = "postgres"\nurl = "{url}"\n')
    assert "w0rdpiece" not in str(caught.value) and "backup" not in str(caught.value)


def test_a_percent_encoded_postgres_password_is_accepted() -> None:
    url = "postgresql://backup:p%40ss%2Fw%40rd@127.0.0.1:5432/app?sslmode=disable"
    config = parse_fleet_config(f'[services.pg]\nkind = "postgres"\nurl = "{url}"\n')
    assert config.services_of("app")["pg"].url == url


@pytest.mark.parametrize("kind", ["directory", "sqlite"])
@pytest.mark.parametrize(
    "path",
    [
        "/data/.app.backfleet-restore-keep0001",
        "/data/.app.backfleet-old-x/db",
        "/d/.x.backfleet-restore-",
    ],
)
def test_a_path_named_like_a_restores_staging_copy_is_refused(
    tmp_path: Path, kind: str, path: str
) -> None:
    """The recovery of a neighbour `app` removes (or moves into place) whatever bears that
    name: configured as a service's path, its data would be lost by another's restore."""
    neighbour = tmp_path / "app"
    staged = tmp_path / ".app.backfleet-restore-keep0001"
    staged.mkdir()
    (staged / "user-data").write_text("precious")
    DirectorySource(neighbour).recover()
    assert not staged.exists()  # what the recovery does to such a name

    text = f'[services.db]\nkind = "{kind}"\npath = "{path}"\n'
    with pytest.raises(ConfigError, match="named like a restore's staging copy"):
        parse_fleet_config(text)


@pytest.mark.parametrize(
    "field",
    [
        'env = ["KUBECONFIG", "BACKUP_ENCRYPTION_KEY"]',
        'env = ["aws_secret_key"]',  # settings are read whatever the case
        'env = ["REDIS_URL"]',
        'env = ["SECONDARY_AZURE_STORAGE_CONNECTION_STRING"]',
        'password_env = "BACKFLEET_API_KEYS"',
    ],
)
def test_a_service_may_not_hand_a_fleet_secret_to_its_tools(field: str) -> None:
    # The security model (docs/security.md) promises no store, encryption or API key and no
    # broker URL reaches a tool.
    with pytest.raises(ConfigError, match="holds a secret of Backfleet's own"):
        parse_fleet_config(COMMAND + field + "\n")


DIRECTORY = '[services.files]\nkind = "directory"\npath = "/data/files"\n'


@pytest.mark.parametrize("kind_table", [DIRECTORY, COMMAND.replace("mariadb", "files")])
def test_any_kind_may_have_hooks(kind_table: str) -> None:
    text = (
        kind_table
        + 'env = ["INCUS_REMOTE"]\n'
        + "[services.files.hooks]\n"
        + 'pre = ["incus", "snapshot", "create", "c1", "backfleet"]\n'
        + 'post = ["incus", "snapshot", "delete", "c1", "backfleet"]\n'
        + 'timeout = "90s"\n'
    )
    spec = parse_fleet_config(text).services_of("app")["files"]
    assert spec.hooks is not None
    assert spec.hooks.pre == ["incus", "snapshot", "create", "c1", "backfleet"]
    assert spec.hooks.post == ["incus", "snapshot", "delete", "c1", "backfleet"]
    assert spec.hooks.timeout_seconds(default=600) == 90
    assert spec.env == ["INCUS_REMOTE"]  # the hooks' environment, whatever the kind


def test_a_hook_without_timeout_takes_the_setting_and_one_hook_is_enough() -> None:
    spec = parse_fleet_config(DIRECTORY + '[services.files.hooks]\npost = ["sync"]\n')
    hooks = spec.services_of("app")["files"].hooks
    assert hooks is not None and hooks.pre is None and hooks.post == ["sync"]
    assert hooks.timeout_seconds(default=600) == 600


@pytest.mark.parametrize(
    ("hooks", "problem"),
    [
        ('pre = "incus snapshot create c1"', r"hooks.pre: must be a list of strings.*no shell"),
        ("post = []", "hooks.post: must name a program to run"),
        ('pre = [""]', "hooks.pre: must name a program to run"),
        ('pre = ["sh", 3]', "hooks.pre: must be a list of strings"),
        ('pre = ["a\\u0000b"]', "hooks.pre: must not contain NUL"),
        ('timeout = "5m"', "a hooks table needs `pre`, `post` or both"),
        ('pre = ["true"]\ntimeout = "soon"', "hooks.timeout: 'soon' is not a duration"),
        ('pre = ["true"]\ntimeout = "0s"', "hooks.timeout: '0s' is not a duration"),
        ('pre = ["true"]\nshell = "true"', r"hooks.shell: Extra inputs are not permitted"),
    ],
)
def test_bad_hooks_say_what_is_wrong(hooks: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_fleet_config(DIRECTORY + "[services.files.hooks]\n" + hooks + "\n")


def test_a_hook_may_not_be_handed_a_fleet_secret_either() -> None:
    text = DIRECTORY + 'env = ["BACKUP_ENCRYPTION_KEY"]\n[services.files.hooks]\npre = ["true"]\n'
    with pytest.raises(ConfigError, match="holds a secret of Backfleet's own"):
        parse_fleet_config(text)


def test_backup_hook_timeout_is_a_duration_setting() -> None:
    from workers.settings import Settings

    assert Settings().hook_timeout_seconds == 600
    assert Settings(backup_hook_timeout="1h").hook_timeout_seconds == 3600
    with pytest.raises(ValueError, match="not a duration"):
        Settings(backup_hook_timeout="ten minutes")


def test_names_and_timestamps_are_ascii_and_end_where_they_seem_to() -> None:
    """`$` matches before a trailing newline and `\\d` matches any Unicode digit: a name
    or timestamp that only looks valid must be refused where it enters (API, files)."""
    from workers.services_config import DNS_LABEL
    from workers.timestamps import is_timestamp

    assert DNS_LABEL.match("app") and not DNS_LABEL.match("app\n")
    assert is_timestamp("2023-02-02t17-03-15")
    assert not is_timestamp("2023-02-02t17-03-15\n")
    assert not is_timestamp("\u0662\u0660\u0662\u0663-02-02t17-03-15")  # Arabic-Indic digits
    with pytest.raises(ConfigError, match="must be a DNS label"):
        parse_fleet_config('[namespaces."app\\n".services.x]\nkind = "directory"\npath = "/x"\n')


def test_pitr_is_a_postgres_key_with_an_optional_window() -> None:
    config = parse_fleet_config(
        'namespace = "app"\n[services.db]\nkind = "postgres"\nurl = "postgresql://u@h/d"\n'
        'pitr = true\npitr_window = "7d"\n'
    )
    spec = config.namespaces["app"]["db"]
    assert spec.pitr and spec.pitr_window == "7d"


@pytest.mark.parametrize(
    ("service", "problem"),
    [
        ('kind = "sqlite"\npath = "/x.db"\npitr = true', 'only for kind = "postgres"'),
        ('kind = "postgres"\nurl = "postgresql://u@h/d"\npitr_window = "7d"', "needs `pitr"),
        ('kind = "postgres"\nurl = "postgresql://u@h/d"\npitr = true\npitr_window = "x"', "x"),
    ],
)
def test_bad_pitr_keys_say_what_is_wrong(service: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_fleet_config(f'namespace = "app"\n[services.db]\n{service}\n')


def test_role_passwords_is_a_postgres_key_and_needs_encrypted_backups() -> None:
    from workers.monitoring.checks import check_source
    from workers.settings import Settings

    config = parse_fleet_config(
        'namespace = "app"\n[services.db]\nkind = "postgres"\nurl = "postgresql://u@h/d"\n'
        "role_passwords = true\n"
    )
    spec = config.namespaces["app"]["db"]
    assert spec.role_passwords
    # `backfleet check` says it before any connection is tried.
    with pytest.raises(ConfigError, match="BACKUP_ENCRYPTION_KEY"):
        check_source(spec, Settings())
    with pytest.raises(ConfigError, match='only for kind = "postgres"'):
        parse_fleet_config(
            'namespace = "app"\n[services.x]\nkind = "sqlite"\npath = "/x.db"\n'
            "role_passwords = true\n"
        )

"""`backfleet up` without servers: ./var, the API key, the demo, the environment, supervision."""

import sqlite3
import stat
import sys
import time
from pathlib import Path

import pytest

from workers.cli.up import (
    ChildSpec,
    StopRequest,
    banner,
    child_specs,
    create_demo,
    load_or_create_api_key,
    needs_embedded_redis,
    prepare_environment,
    prepare_var_dir,
    spawn,
    stop_children,
    supervise,
    wants_demo,
)
from workers.errors import ConfigError
from workers.services_config import load_fleet_config
from workers.settings import parse_api_keys


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_var_dir_is_private_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    var = prepare_var_dir(Path("var"))
    assert var == tmp_path / "var"
    assert mode(var) == 0o700
    var.chmod(0o755)
    prepare_var_dir(Path("var"))
    assert mode(var) == 0o700


def test_api_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    key = load_or_create_api_key(tmp_path)
    path = tmp_path / "api-key"
    assert mode(path) == 0o600
    assert len(key) >= 40 and ":" not in key and "," not in key
    assert path.read_text().strip() == key
    assert load_or_create_api_key(tmp_path) == key  # reused, not regenerated


def test_api_key_file_mode_is_tightened_on_reuse(tmp_path: Path) -> None:
    (tmp_path / "api-key").write_text("abc123\n")
    (tmp_path / "api-key").chmod(0o644)
    assert load_or_create_api_key(tmp_path) == "abc123"
    assert mode(tmp_path / "api-key") == 0o600


@pytest.mark.parametrize("content", ["", "with:colon", "a,b"])
def test_unusable_api_key_file_is_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "api-key").write_text(content)
    with pytest.raises(ConfigError, match="api-key"):
        load_or_create_api_key(tmp_path)


def test_demo_is_created_once_and_parses(tmp_path: Path) -> None:
    services = create_demo(tmp_path)
    database, config = tmp_path / "demo" / "app.db", tmp_path / "demo" / "config"
    with sqlite3.connect(database) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"projects", "jobs"} <= tables
        assert db.execute("SELECT count(*) FROM projects").fetchone()[0] > 0
    assert (config / "app.toml").is_file()
    assert any(child.is_dir() for child in config.iterdir())
    assert sorted(entry.name for entry in config.parent.iterdir()) == ["app.db", "config"]

    fleet = load_fleet_config(services)
    assert fleet.default_namespace == "app"
    specs = fleet.services_of("app")
    assert specs["metadata"].kind == "sqlite" and specs["metadata"].path == database
    assert specs["config"].kind == "directory" and specs["config"].path == config
    assert specs["config"].config and not specs["metadata"].config
    assert specs["metadata"].path is not None and specs["metadata"].path.is_absolute()

    # A second start keeps what the user changed in the demo.
    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM projects")
    (config / "app.toml").write_text("changed")
    create_demo(tmp_path)
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM projects").fetchone()[0] == 0
    assert (config / "app.toml").read_text() == "changed"


def test_demo_only_without_a_services_file(tmp_path: Path) -> None:
    assert wants_demo({}, tmp_path)
    assert not wants_demo({"BACKFLEET_CONFIG": "/etc/backfleet.toml"}, tmp_path)
    (tmp_path / "backfleet.toml").write_text('namespace = "app"\n')
    assert not wants_demo({}, tmp_path)


def test_environment_defaults(tmp_path: Path) -> None:
    services = tmp_path / "backfleet.toml"
    env = prepare_environment(tmp_path, {"PATH": "/bin"}, api_key="k3y", services_file=services)
    assert env["PATH"] == "/bin"
    assert env["BACKFLEET_API_KEYS"] == "k3y:admin@localhost:local"
    (entry,) = parse_api_keys(env["BACKFLEET_API_KEYS"])
    assert (entry.key, entry.owner_email, entry.customer) == ("k3y", "admin@localhost", "local")
    assert env["BACKFLEET_CONFIG"] == str(services)
    assert env["DATABASE_URL"] == f"sqlite:///{tmp_path}/backfleet.db"
    assert env["DATABASE_URL"].startswith("sqlite:////")  # an absolute path
    assert env["OBJECT_STORE_LOCATION_LOCAL"] == str(tmp_path / "backup")
    assert env["BACKFLEET_API_PORT"] == "8080" and env["BACKFLEET_FLOWER_PORT"] == "5555"
    assert "BROKER_URL" not in env


def test_environment_keeps_what_the_user_set(tmp_path: Path) -> None:
    mine = {
        "BACKFLEET_API_KEYS": "theirs",
        "BACKFLEET_CONFIG": "/etc/backfleet.toml",
        "DATABASE_URL": "postgresql://db/catalog",
        "OBJECT_STORE_LOCATION_LOCAL": "/backup",
        "BACKFLEET_API_PORT": "9000",
        "BROKER_URL": "redis://redis:6379/0",
    }
    env = prepare_environment(tmp_path, mine, api_key="ignored", services_file=None)
    assert {name: env[name] for name in mine} == mine


def test_embedded_redis_only_without_a_broker() -> None:
    assert needs_embedded_redis({})
    assert needs_embedded_redis({"BROKER_URL": ""})
    assert not needs_embedded_redis({"BROKER_URL": "redis://127.0.0.1:6379/0"})
    assert not needs_embedded_redis({"REDIS_URL": "redis://127.0.0.1:6379/0"})


def test_children_use_this_python_and_loopback(tmp_path: Path) -> None:
    env = prepare_environment(
        tmp_path, {"BACKFLEET_FLOWER_PORT": "5601"}, api_key="k", services_file=None
    )
    specs = {spec.name: spec.argv for spec in child_specs(env, tmp_path)}
    assert set(specs) == {"api", "worker", "beat", "flower", "wal"}
    assert specs["wal"][-3:] == ["-m", "workers.cli", "wal"]
    assert all(argv[:2] == [sys.executable, "-m"] for argv in specs.values())
    assert specs["api"][specs["api"].index("--host") + 1] == "127.0.0.1"
    assert specs["api"][specs["api"].index("--port") + 1] == "8080"
    assert "--address=127.0.0.1" in specs["flower"] and "--port=5601" in specs["flower"]
    assert "backup,restore,audit,verify,maintenance" in specs["worker"]
    assert str(tmp_path / "celerybeat-schedule") in specs["beat"]


def test_banner_shows_urls_key_and_curl_examples(tmp_path: Path) -> None:
    env = prepare_environment(tmp_path, {}, api_key="s3cret", services_file=None)
    text = banner(env, "s3cret", tmp_path)
    assert "http://127.0.0.1:8080/docs" in text and "http://127.0.0.1:5555" in text
    assert "s3cret" in text and str(tmp_path / "api-key") in text
    for call in ("ondemandbackup", "backup/latest", "ondemandrestore", "restorestatus?timestamp="):
        assert f"/athena/api/v1/{call}" in text
    assert text.count('-H "Authorization: s3cret"') == 4


def sleeper(name: str, *, ignore_term: bool = False) -> ChildSpec:
    code = "import signal, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('ready', flush=True)\ntime.sleep(60)\n"
    return ChildSpec(name, [sys.executable, "-c", code])


def test_a_dying_child_stops_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    failing = ChildSpec("beat", [sys.executable, "-c", "raise SystemExit(3)"])
    children = [spawn(sleeper("api"), {}), spawn(failing, {})]
    try:
        assert supervise(children, StopRequest()) == 1
    finally:
        stop_children(children, grace=5)
    error = capsys.readouterr().err
    assert "beat" in error and "code 3" in error
    assert all(child.process.poll() is not None for child in children)


def test_stop_terms_then_kills_stragglers() -> None:
    children = [spawn(sleeper("api"), {}), spawn(sleeper("worker", ignore_term=True), {})]
    time.sleep(0.5)  # let the straggler install its handler
    stop = StopRequest()
    stop(2, None)
    assert supervise(children, stop) == 0
    started = time.monotonic()
    stop_children(children, grace=1.0, stop=stop)
    assert time.monotonic() - started < 5
    assert children[0].process.returncode == -15  # SIGTERM
    assert children[1].process.returncode == -9  # SIGKILL after the grace period


def test_up_keeps_a_signing_key_unless_one_is_given(tmp_path: Path) -> None:
    env = prepare_environment(tmp_path, {}, api_key="k", services_file=None)
    key = env["BACKUP_SIGNING_KEY"]
    assert len(key) >= 32 and (tmp_path / "signing-key").read_text().strip() == key
    assert stat.S_IMODE((tmp_path / "signing-key").stat().st_mode) == 0o600
    again = prepare_environment(tmp_path, {}, api_key="k", services_file=None)
    assert again["BACKUP_SIGNING_KEY"] == key  # the same key across restarts: old MACs verify
    for given in ({"BACKUP_SIGNING_KEY": "x" * 40}, {"BACKUP_ENCRYPTION_KEY": "AGE-SECRET-KEY-1"}):
        env = prepare_environment(tmp_path, given, api_key="k", services_file=None)
        assert env.get("BACKUP_SIGNING_KEY") == given.get("BACKUP_SIGNING_KEY")

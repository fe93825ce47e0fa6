"""The size judgement: a service's sizes against the median of its history, and its settings."""

import pytest

from workers.errors import ConfigError
from workers.monitoring.size_anomalies import policy_for
from workers.monitoring.sizes import ServiceSizes, SizePolicy, format_bytes, judge
from workers.services_config import parse_fleet_config
from workers.settings import Settings, load_settings

DEFAULT = SizePolicy(history=7, drop=0.5, growth=3.0)
MiB = 1024 * 1024


def sizes(source: int, stored: int | None = None, *, encrypted: bool = False) -> ServiceSizes:
    return ServiceSizes(source, source // 10 if stored is None else stored, encrypted)


def history(*sources: int, encrypted: bool = False) -> list[ServiceSizes]:
    return [sizes(s, encrypted=encrypted) for s in sources]


NORMAL = history(*[120 * MiB] * 7)


def test_a_normal_backup_is_not_an_anomaly() -> None:
    assert judge("db", sizes(110 * MiB), NORMAL, DEFAULT) is None
    assert judge("db", sizes(300 * MiB), NORMAL, DEFAULT) is None  # 2.5x: within 3x


def test_zero_bytes_is_always_an_anomaly_even_without_history() -> None:
    assert judge("db", sizes(0, 0), [], DEFAULT) == "db: 0 bytes (the dump was empty)"
    assert judge("db", sizes(0, 9), NORMAL, DEFAULT) == "db: 0 bytes (the dump was empty)"
    off = SizePolicy(history=0, drop=0, growth=0)
    assert judge("db", sizes(0, 9), [], off) == "db: 0 bytes (the dump was empty)"
    stored_nothing = judge("db", sizes(5 * MiB, 0), [], DEFAULT)
    assert stored_nothing == "db: 0 bytes (nothing stored from 5.0 MiB of source)"


def test_a_90_percent_smaller_backup_is_an_anomaly_of_both_sizes() -> None:
    found = judge("grafana", sizes(12 * MiB), NORMAL, DEFAULT)
    assert found == (
        "grafana: source 12.0 MiB, 90 % below the median 120.0 MiB of the last 7; "
        "stored 1.2 MiB, 90 % below the median 12.0 MiB of the last 7"
    )


def test_a_growth_beyond_the_factor_is_an_anomaly() -> None:
    found = judge("db", sizes(400 * MiB, 12 * MiB), NORMAL, DEFAULT)
    assert found == "db: source 400.0 MiB, 3.3x the median 120.0 MiB of the last 7"


def test_the_thresholds_are_strict_and_can_be_turned_off() -> None:
    assert judge("db", sizes(60 * MiB, 12 * MiB), NORMAL, DEFAULT) is None  # exactly half
    assert judge("db", sizes(360 * MiB, 12 * MiB), NORMAL, DEFAULT) is None  # exactly 3x
    assert judge("db", sizes(59 * MiB, 12 * MiB), NORMAL, DEFAULT) is not None
    no_drop = SizePolicy(history=7, drop=0, growth=3.0)
    assert judge("db", sizes(1, 1), NORMAL, no_drop) is None
    no_growth = SizePolicy(history=7, drop=0.5, growth=0)
    assert judge("db", sizes(10_000 * MiB, 12 * MiB), NORMAL, no_growth) is None
    strict = SizePolicy(history=7, drop=0.05, growth=1.1)
    assert judge("db", sizes(110 * MiB, 12 * MiB), NORMAL, strict) is not None


def test_a_change_below_the_floor_is_no_anomaly_but_0_bytes_still_is() -> None:
    floored = SizePolicy(history=7, drop=0.5, growth=3.0, min_bytes=MiB)
    tiny = [sizes(2048, 2048)] * 7  # a 2 KiB configuration dump
    assert judge("conf", sizes(7 * 1024, 7 * 1024), tiny, DEFAULT) is not None  # 3.5x
    assert judge("conf", sizes(7 * 1024, 7 * 1024), tiny, floored) is None
    assert judge("conf", sizes(100, 100), tiny, floored) is None  # 95 % below, 1.9 KiB less
    assert judge("conf", sizes(0, 0), tiny, floored) == "conf: 0 bytes (the dump was empty)"
    # Past the floor the ratios decide as before; each size against its own median.
    assert judge("conf", sizes(3 * MiB, 3 * MiB), tiny, floored) is not None
    found = judge("db", sizes(12 * MiB), NORMAL, floored)  # stored: 10.8 MiB less
    assert found is not None and "source 12.0 MiB" in found and "stored 1.2 MiB" in found
    one_over = judge("db", sizes(200 * MiB, 12 * MiB + MiB // 2), NORMAL, floored)
    assert one_over is None  # 1.7x source; stored 0.5 MiB off: within both


def test_the_median_ignores_one_odd_backup_in_the_history() -> None:
    odd = history(120 * MiB, 1 * MiB, 120 * MiB, 5000 * MiB, 120 * MiB)
    assert judge("db", sizes(118 * MiB), odd, DEFAULT) is None
    assert "below the median 120.0 MiB of the last 5" in str(judge("db", sizes(MiB), odd, DEFAULT))


def test_only_the_last_n_count() -> None:
    old_then_new = history(10 * MiB, 10 * MiB, 10 * MiB, *[120 * MiB] * 7)  # newest first
    three = SizePolicy(history=3, drop=0.5, growth=3.0)
    assert judge("db", sizes(10 * MiB), old_then_new, three) is None
    assert "below the median 120.0 MiB of the last 7" in str(
        judge("db", sizes(10 * MiB), old_then_new, DEFAULT)
    )


def test_no_judgement_until_three_backups_but_zero_bytes() -> None:
    two = history(120 * MiB, 120 * MiB)
    assert judge("db", sizes(1 * MiB), two, DEFAULT) is None
    assert judge("db", sizes(0), two, DEFAULT) is not None
    assert judge("db", sizes(1 * MiB), [*two, sizes(120 * MiB)], DEFAULT) is not None
    # A history shorter than three was asked for: that many are enough.
    one = SizePolicy(history=1, drop=0.5, growth=3.0)
    assert judge("db", sizes(1 * MiB), history(120 * MiB), one) is not None
    assert judge("db", sizes(1 * MiB), NORMAL, SizePolicy(history=0, drop=0.5, growth=3)) is None


def test_stored_bytes_are_compared_only_with_backups_stored_the_same_way() -> None:
    # A tiny service: age's header makes its encrypted artifact several times the plain one.
    plain = [ServiceSizes(100, 90, False)] * 7
    first_encrypted = ServiceSizes(100, 330, True)
    assert judge("cfg", first_encrypted, plain, DEFAULT) is None
    encrypted = [ServiceSizes(100, 330, True)] * 3 + plain
    assert judge("cfg", ServiceSizes(100, 331, True), encrypted, DEFAULT) is None
    # Among the last 7, three are encrypted: enough to judge the stored bytes.
    dropped = judge("cfg", ServiceSizes(100, 30, True), encrypted, DEFAULT)
    assert dropped == "cfg: stored 30 B, 91 % below the median 330 B of the last 3"
    # Source bytes do not depend on encryption: every backup counts.
    assert "source 10 B, 90 % below the median 100 B of the last 7" in str(
        judge("cfg", ServiceSizes(10, 330, True), encrypted, DEFAULT)
    )


def test_a_history_of_empty_dumps_sets_no_bar() -> None:
    assert judge("db", sizes(5 * MiB), history(0, 0, 0), DEFAULT) is None


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (0, 1023, 1024, 1536, 12 * MiB, 3 * 1024**4)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "12.0 MiB",
        "3.0 TiB",
    ]


def test_settings_and_the_services_file_override(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert (settings.size_anomaly_history, settings.size_anomaly_drop) == (7, 0.5)
    assert settings.size_anomaly_growth == 3.0
    config = parse_fleet_config(
        '[services.db]\nkind = "sqlite"\npath = "/x.db"\nsize_drop = 0.95\n'
        '[services.files]\nkind = "directory"\npath = "/x"\nsize_growth = 0\n'
        '[services.other]\nkind = "directory"\npath = "/y"\n'
    )
    specs = config.services_of("app")
    floor = settings.size_anomaly_min_bytes
    assert floor == MiB
    assert policy_for(settings, specs["db"]) == SizePolicy(7, drop=0.95, growth=3.0, min_bytes=MiB)
    assert policy_for(settings, specs["files"]) == SizePolicy(7, drop=0.5, growth=0, min_bytes=MiB)
    assert policy_for(settings, specs["other"]) == SizePolicy(7, 0.5, 3.0, min_bytes=floor)
    assert policy_for(settings, None) == SizePolicy(7, 0.5, 3.0, min_bytes=floor)
    monkeypatch.setenv("SIZE_ANOMALY_MIN_BYTES", "500kB")
    assert load_settings().size_anomaly_min_bytes == 500_000


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("SIZE_ANOMALY_DROP", "1", "less than 1"),
        ("SIZE_ANOMALY_DROP", "-0.1", "greater than or equal to 0"),
        ("SIZE_ANOMALY_GROWTH", "0.5", "a factor above 1"),
        ("SIZE_ANOMALY_GROWTH", "1", "a factor above 1"),
        ("SIZE_ANOMALY_HISTORY", "-1", "greater than or equal to 0"),
        ("SIZE_ANOMALY_MIN_BYTES", "a lot", "not a size such as"),
        ("SIZE_ANOMALY_MIN_BYTES", "-1", "not a size such as"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert f"invalid setting {variable}" in str(refused.value) and reason in str(refused.value)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [("size_drop = 1.5", "less than 1"), ("size_growth = 0.9", "a factor above 1")],
)
def test_bad_overrides_are_refused_naming_the_key(entry: str, reason: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_fleet_config(f'[services.db]\nkind = "sqlite"\npath = "/x.db"\n{entry}\n')
    key = entry.split(" ", 1)[0]
    assert f"services.db.{key}" in str(refused.value) and reason in str(refused.value)

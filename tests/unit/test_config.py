import pytest

from retention.config import load_config
from retention.errors import ConfigError


def test_profiles_change_budgets():
    smoke, cpu = load_config("smoke"), load_config("cpu")
    assert smoke.data.sample_rows is not None and cpu.data.sample_rows is None
    assert smoke.risk.n_estimators < cpu.risk.n_estimators


def test_overrides_are_coerced_from_strings():
    cfg = load_config("cpu", {"risk.max_depth": "5", "data.allow_download": "false", "data.sample_rows": "none"})
    assert cfg.risk.max_depth == 5 and cfg.data.allow_download is False and cfg.data.sample_rows is None


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"risk.max_dpeth": 3}, "max_dpeth"),
        ({"nosuch.field": 1}, "nosuch.field"),
        ({"risk.max_depth": "deep"}, "risk.max_depth"),
        ({"risk.max_depth": 2.5}, "risk.max_depth"),
        ({"data.allow_download": "maybe"}, "data.allow_download"),
    ],
)
def test_bad_overrides_name_the_field(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("cpu", overrides)


def test_unknown_profile():
    with pytest.raises(ConfigError, match="smoke, cpu, gpu"):
        load_config("huge")


def test_env_sets_data_dir(monkeypatch):
    monkeypatch.setenv("RETENTION_DATA_DIR", "/somewhere")
    assert load_config("cpu").data.data_dir == "/somewhere"
    assert load_config("cpu", {"data.data_dir": "/explicit"}).data.data_dir == "/explicit"

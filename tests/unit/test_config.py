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


def _documented(doc: str) -> set[str]:
    """Names listed under a dataclass docstring's ``Attributes`` (``name:`` or ``a, b, c:`` lines)."""
    block = doc.split("Attributes", 1)[-1]
    names: set[str] = set()
    for line in block.splitlines():
        if line.startswith("    ") and not line.startswith("     ") and line.rstrip().endswith(":"):
            names.update(n.strip() for n in line.strip().rstrip(":").split(","))
    return names


def test_every_field_is_documented_in_its_dataclass():
    import dataclasses

    from retention.config import Config

    cfg = load_config("cpu")
    for section in dataclasses.fields(Config):
        value = getattr(cfg, section.name)
        if dataclasses.is_dataclass(value):
            missing = {f.name for f in dataclasses.fields(value)} - _documented(type(value).__doc__)
            assert not missing, f"{type(value).__name__} does not document {sorted(missing)}"


def test_cpu_training_defaults_suit_a_cpu():
    m = load_config("cpu").messaging
    assert (m.train_dtype, m.gradient_checkpointing, m.torch_threads) == ("auto", False, 0)
    # the longest tokenized personal-part example (SmolLM2 tokenizer: prompt <= 64, reply <= 26) is not cut
    assert m.max_length >= 90

"""Typed configuration: every default lives here, once.

A :class:`Config` is built from a *profile* and optional overrides::

    cfg = load_config("smoke", {"data.seed": 7})

Profiles
--------
``smoke``
    Tiny samples and few boosting rounds: what the test suite uses (seconds).
``cpu`` (default)
    Real data, budgets sized for a 2-core machine.
``gpu``
    Real hardware: larger searches and models (later stages use it for the base LM).

Overrides use dotted keys (``section.field``) and are type-checked against the
dataclass field, so a typo or a wrong type is a clear error, not a silent no-op.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, get_type_hints

from retention.errors import ConfigError

PROFILES = ("smoke", "cpu", "gpu")
DEFAULT_PROFILE = "cpu"


@dataclass(frozen=True)
class DataConfig:
    """Where raw data comes from and how it is split.

    Attributes
    ----------
    data_dir:
        Explicit folder of raw files (``--data-dir`` / ``RETENTION_DATA_DIR``); searched first.
    cache_dir:
        Download cache; searched second, and where downloads are written.
    mirror_dir:
        Read-only local mirror (``RETENTION_DATA_MIRROR``); searched third.
    processed_dir:
        Where validated Parquet splits and their manifest are written.
    allow_download:
        Whether to fall back to the public sources (network) when no local copy exists.
    seed:
        Seed of the stratified splits.
    valid_frac, test_frac:
        Fractions of rows for the validation and test splits (train gets the rest).
    sample_rows:
        If set, keep only this many rows of each tabular dataset (stratified); ``smoke`` uses it.
    """

    data_dir: str | None = None
    cache_dir: str = "data/raw"
    mirror_dir: str = "../shared/data"
    processed_dir: str = "data/processed"
    allow_download: bool = True
    seed: int = 42
    valid_frac: float = 0.1
    test_frac: float = 0.1
    sample_rows: int | None = None


@dataclass(frozen=True)
class RiskConfig:
    """Churn-risk model (XGBoost on all Telco features).

    Attributes
    ----------
    n_estimators:
        Upper bound on boosting rounds; early stopping on the valid split picks the number used.
    learning_rate, max_depth, min_child_weight, subsample, colsample_bytree, reg_lambda:
        XGBoost hyperparameters.
    early_stopping_rounds:
        Rounds without improvement of valid log loss before stopping.
    calibration_frac:
        Fraction of the train split held out (stratified) to fit the isotonic calibrator.
    n_trials:
        Optuna trials for a bounded search (0 disables the search).
    n_jobs:
        Threads for XGBoost.
    """

    n_estimators: int = 600
    learning_rate: float = 0.03
    max_depth: int = 3
    min_child_weight: float = 5.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 5.0
    early_stopping_rounds: int = 50
    calibration_frac: float = 0.25
    n_trials: int = 0
    n_jobs: int = 2


@dataclass(frozen=True)
class AcceptConfig:
    """Offer-acceptance model P(accept | customer, offer_level), trained on Bank Marketing.

    Attributes mirror :class:`RiskConfig`; ``offer_level`` is constrained monotone increasing.
    """

    n_estimators: int = 800
    learning_rate: float = 0.05
    max_depth: int = 4
    min_child_weight: float = 10.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 5.0
    early_stopping_rounds: int = 50
    calibration_frac: float = 0.25
    n_trials: int = 0
    n_jobs: int = 2


@dataclass(frozen=True)
class GateConfig:
    """Promotion thresholds, checked on the untouched test split.

    Attributes
    ----------
    risk_min_auc, risk_max_ece:
        Churn-risk gate.
    accept_min_auc, accept_max_ece:
        Offer-acceptance gate.
    tolerance:
        A candidate may be at most this much worse (AUC lower, ECE higher) than the current
        champion and still be promoted.
    ece_bins:
        Number of equal-width probability bins used for the expected calibration error.
    """

    risk_min_auc: float = 0.78
    risk_max_ece: float = 0.05
    accept_min_auc: float = 0.70
    accept_max_ece: float = 0.05
    tolerance: float = 0.01
    ece_bins: int = 10


@dataclass(frozen=True)
class Config:
    """The whole configuration of one run."""

    profile: str = DEFAULT_PROFILE
    data: DataConfig = field(default_factory=DataConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    accept: AcceptConfig = field(default_factory=AcceptConfig)
    gate: GateConfig = field(default_factory=GateConfig)

    def to_flat_dict(self) -> dict[str, Any]:
        """Return ``{"section.field": value}`` for logging as MLflow params."""
        flat: dict[str, Any] = {"profile": self.profile}
        for f in fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                for sf in fields(section):
                    flat[f"{f.name}.{sf.name}"] = getattr(section, sf.name)
        return flat


# Environment variables that set a config field (explicit overrides still win).
ENV_OVERRIDES = {
    "RETENTION_DATA_DIR": "data.data_dir",
    "RETENTION_DATA_MIRROR": "data.mirror_dir",
    "RETENTION_CACHE_DIR": "data.cache_dir",
    "RETENTION_PROCESSED_DIR": "data.processed_dir",
}


def _profile_overrides(profile: str) -> dict[str, Any]:
    if profile == "smoke":
        return {
            "data.sample_rows": 1500,
            "risk.n_estimators": 60,
            "risk.early_stopping_rounds": 10,
            "accept.n_estimators": 60,
            "accept.early_stopping_rounds": 10,
        }
    if profile == "gpu":
        return {"risk.n_trials": 30, "accept.n_trials": 30, "risk.n_jobs": -1, "accept.n_jobs": -1}
    return {}


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Coerce ``value`` (possibly a CLI string) to the field's type, or raise ConfigError."""
    hint_s = str(hint)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
        if "None" in hint_s:
            return None
        raise ConfigError(f"config field '{key}' may not be empty (expected {hint_s}).")
    try:
        if "bool" in hint_s:
            if isinstance(value, bool):
                return value
            low = str(value).lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if "int" in hint_s and "float" not in hint_s:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if "float" in hint_s:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"config field '{key}' got {value!r}, which is not a valid {hint_s}."
        ) from None


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Return a copy of ``cfg`` with dotted-key ``overrides`` applied (type-checked)."""
    for key, value in overrides.items():
        section_name, _, field_name = key.partition(".")
        section = getattr(cfg, section_name, None)
        if not field_name or not dataclasses.is_dataclass(section):
            sections = [f.name for f in fields(cfg) if f.name != "profile"]
            raise ConfigError(f"unknown config key '{key}': use 'section.field' with section in {sections}.")
        hints = get_type_hints(type(section))
        if field_name not in hints:
            raise ConfigError(
                f"unknown config key '{key}': '{section_name}' has fields {sorted(hints)}."
            )
        new_section = replace(section, **{field_name: _coerce(value, hints[field_name], key)})
        cfg = replace(cfg, **{section_name: new_section})
    return cfg


def load_config(profile: str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Build the configuration for ``profile`` (default ``$RETENTION_PROFILE`` or ``cpu``).

    Environment variables in :data:`ENV_OVERRIDES` (``RETENTION_DATA_DIR``, ``RETENTION_DATA_MIRROR``,
    ``RETENTION_CACHE_DIR``, ``RETENTION_PROCESSED_DIR``) set their field; explicit ``overrides`` win.
    """
    profile = profile or os.environ.get("RETENTION_PROFILE") or DEFAULT_PROFILE
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile '{profile}': choose one of {', '.join(PROFILES)}.")
    merged: dict[str, Any] = dict(_profile_overrides(profile))
    for var, key in ENV_OVERRIDES.items():
        if os.environ.get(var):
            merged[key] = os.environ[var]
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return apply_overrides(Config(profile=profile), merged)

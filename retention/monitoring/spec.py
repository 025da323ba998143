"""The drift checks as data: ``monitoring/drift.yaml``, read and checked by :func:`load_spec`.

The spec names each column, its role (feature or prediction), its kind (numeric or categorical),
the Evidently method and threshold, the ``drift_share`` of the alarm, and the settings of the
decision-mix and calibration tables. A wrong spec is refused with a message naming the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retention.errors import MonitoringError
from retention.serving import inference_log

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = ROOT / "monitoring" / "drift.yaml"
ROLES = ("feature", "prediction")
# Evidently methods allowed per kind. Distances: larger = more drift, drifted when score >= threshold.
# p-values: drifted when p < threshold. (Evidently's "hellinger" fails on text categories in 0.7.23.)
DISTANCES = {"wasserstein", "wasserstein_abs", "psi", "jensenshannon", "kl_div", "ed"}
P_VALUES = {"ks", "chisquare"}
METHODS = {"numeric": {"wasserstein", "wasserstein_abs", "psi", "jensenshannon", "kl_div", "ed", "ks"},
           "categorical": {"jensenshannon", "psi", "kl_div", "chisquare"}}
LOG_COLUMNS = (*inference_log.FEATURE_COLUMNS, *inference_log.PREDICTION_COLUMNS)


@dataclass(frozen=True)
class ColumnCheck:
    """One column of the drift spec.

    Attributes
    ----------
    name:
        Column of the inference log.
    role:
        ``feature`` (a model input) or ``prediction`` (a model output).
    kind:
        ``numeric`` or ``categorical``.
    method:
        Evidently stattest name (see :data:`METHODS`).
    threshold:
        Drift when a distance is at or above it, or a p-value below it.
    """

    name: str
    role: str
    kind: str
    method: str
    threshold: float


@dataclass(frozen=True)
class DriftSpec:
    """The drift checks (``monitoring/drift.yaml``).

    Attributes
    ----------
    columns:
        Every checked column, features first.
    drift_share:
        The alarm goes off when at least this share of the columns drifted (or any prediction did).
    min_rows:
        Smaller windows are compared but flagged as noisy.
    decision_mix_max_change:
        Absolute change of the contact rate or an offer share reported as "moved".
    calibration_bins:
        Equal-width probability bins of the acceptance calibration table.
    calibration_min_rows:
        Matched outcomes needed before the calibration error is trusted.
    """

    columns: tuple[ColumnCheck, ...]
    drift_share: float
    min_rows: int = 200
    decision_mix_max_change: float = 0.10
    calibration_bins: int = 10
    calibration_min_rows: int = 30

    def of_role(self, role: str) -> list[ColumnCheck]:
        return [c for c in self.columns if c.role == role]


def _number(value: Any, key: str, lo: float, hi: float, integer: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not lo <= value <= hi or (integer and float(value) != int(value)):
        kind = "an integer" if integer else "a number"
        raise MonitoringError(f"drift spec: '{key}' must be {kind} between {lo} and {hi}")
    return value


def parse_spec(raw: dict[str, Any]) -> DriftSpec:
    """Check a drift spec (the parsed YAML) and build a :class:`DriftSpec`.

    Raises
    ------
    MonitoringError
        Naming the key that is wrong and what it must be.
    """
    if not isinstance(raw, dict):
        raise MonitoringError("drift spec: expected a mapping with 'groups' and 'drift_share'")
    unknown = sorted(set(raw) - {"groups", "drift_share", "min_rows", "decision_mix", "calibration"})
    if unknown:
        raise MonitoringError(f"drift spec: unknown key(s) {unknown}; allowed: groups, drift_share, min_rows, "
                              "decision_mix, calibration")
    groups = raw.get("groups")
    if not isinstance(groups, list) or not groups:
        raise MonitoringError("drift spec: 'groups' must be a non-empty list of {role, kind, method, threshold, "
                              "columns}")
    columns: list[ColumnCheck] = []
    for g, group in enumerate(groups):
        where = f"groups[{g}]"
        if not isinstance(group, dict):
            raise MonitoringError(f"drift spec: '{where}' must be a mapping")
        role, kind, method = group.get("role"), group.get("kind"), group.get("method")
        if role not in ROLES:
            raise MonitoringError(f"drift spec: '{where}.role' must be one of {list(ROLES)}")
        if kind not in METHODS:
            raise MonitoringError(f"drift spec: '{where}.kind' must be one of {sorted(METHODS)}")
        if method not in METHODS[kind]:
            raise MonitoringError(f"drift spec: '{where}.method' must be one of {sorted(METHODS[kind])} for "
                                  f"{kind} columns")
        upper = 1.0 if method in P_VALUES else 100.0
        threshold = float(_number(group.get("threshold"), f"{where}.threshold", 1e-9, upper))
        names = group.get("columns")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise MonitoringError(f"drift spec: '{where}.columns' must be a non-empty list of column names")
        for n in names:
            if n not in LOG_COLUMNS:
                raise MonitoringError(f"drift spec: '{where}.columns' names '{n}', which the inference log does "
                                      f"not have; choose from {list(LOG_COLUMNS)}")
            expected = "prediction" if n in inference_log.PREDICTION_COLUMNS else "feature"
            if role != expected:
                raise MonitoringError(f"drift spec: '{n}' is a {expected} column; move it to a group with "
                                      f"role: {expected}")
            if role == "prediction" and kind != "numeric":
                raise MonitoringError(f"drift spec: '{n}' is a probability; check it as kind: numeric")
            columns.append(ColumnCheck(n, role, kind, method, threshold))
    seen: set[str] = set()
    for c in columns:
        if c.name in seen:
            raise MonitoringError(f"drift spec: '{c.name}' appears in two groups; keep one")
        seen.add(c.name)
    mix = raw.get("decision_mix") or {}
    cal = raw.get("calibration") or {}
    if not isinstance(mix, dict) or not isinstance(cal, dict):
        raise MonitoringError("drift spec: 'decision_mix' and 'calibration' must be mappings")
    columns.sort(key=lambda c: ROLES.index(c.role))
    return DriftSpec(
        columns=tuple(columns),
        drift_share=float(_number(raw.get("drift_share"), "drift_share", 1e-9, 1.0)),
        min_rows=int(_number(raw.get("min_rows", 200), "min_rows", 1, 1e9, integer=True)),
        decision_mix_max_change=float(_number(mix.get("max_change", 0.10), "decision_mix.max_change", 1e-9, 1.0)),
        calibration_bins=int(_number(cal.get("bins", 10), "calibration.bins", 2, 100, integer=True)),
        calibration_min_rows=int(_number(cal.get("min_rows", 30), "calibration.min_rows", 1, 1e9, integer=True)),
    )


def load_spec(path: Path | str | None = None) -> DriftSpec:
    """Read and check the drift spec (default ``monitoring/drift.yaml``; relative paths from the project root)."""
    import yaml

    p = Path(path) if path else DEFAULT_SPEC
    if not p.is_absolute() and not p.is_file():
        p = ROOT / p
    if not p.is_file():
        raise MonitoringError(f"drift spec not found at {p}: set monitoring.drift_spec to a YAML file like "
                              "monitoring/drift.yaml")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise MonitoringError(f"drift spec {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_spec(raw)

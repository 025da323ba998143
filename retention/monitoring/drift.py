"""Drift of the inference log against a reference: the computation (rendering is in ``report``).

* **The checks are data** (:mod:`retention.monitoring.spec`): ``monitoring/drift.yaml``, read and
  checked by :func:`~retention.monitoring.spec.load_spec`.
* **The reference and the current window** come from the inference log
  (:mod:`retention.monitoring.window`).
* :func:`compute_drift` runs Evidently 0.7 (``Report([DataDriftPreset(...)], include_tests=True)``,
  current first) and returns a :class:`DriftResult`: per column the score, method, threshold,
  drifted flag and summaries of both sides, ordered by how far past its threshold each column is;
  the share drifted and the verdict; the decision mix; and the calibration of acceptance where
  outcomes were recorded.

Missing values: a missing categorical value is its own category, ``(missing)``. This is how a
category the model never saw shows up, because the request validation logs an unknown category
as missing. Missing numeric values are left out of the distance, and their share is in the summaries.
Nothing here reads names, message texts or customer ids: only the drift columns reach Evidently.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from retention.errors import EmptyWindowError, MonitoringError
from retention.monitoring.spec import P_VALUES, ROLES, ColumnCheck, DriftSpec
from retention.offers import OFFER_PERCENT

MISSING = "(missing)"
TOP_CATEGORIES = 8


# ----------------------------------------------------------------------------- the maths (pure)
def prepare(frame: pd.DataFrame, checks: Sequence[ColumnCheck]) -> pd.DataFrame:
    """The checked columns only: numbers as floats, categories as text with ``(missing)`` for gaps."""
    out = {}
    for c in checks:
        s = frame[c.name] if c.name in frame.columns else pd.Series([None] * len(frame), index=frame.index)
        if c.kind == "numeric":
            out[c.name] = pd.to_numeric(s, errors="coerce").astype(float)
        else:
            out[c.name] = s.map(_category).astype(object)
    return pd.DataFrame(out, index=frame.index).reset_index(drop=True)


def _category(v: Any) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    if isinstance(v, float) and v.is_integer():
        return str(int(v))  # SeniorCitizen is stored as a float: 0.0 -> "0"
    text = str(v)
    return text if text.strip() else MISSING


def summarise(values: pd.Series, kind: str) -> dict[str, Any]:
    """Mean, median and missing share of a number; the largest category shares of a category."""
    n = len(values)
    if kind == "numeric":
        x = pd.to_numeric(values, errors="coerce")
        known = x.dropna()
        return {"mean": float(known.mean()) if len(known) else None,
                "median": float(known.median()) if len(known) else None,
                "missing": float(1 - len(known) / n) if n else 0.0}
    shares = values.value_counts(normalize=True, dropna=False)
    top = {str(k): round(float(v), 4) for k, v in shares.head(TOP_CATEGORIES).items()}
    return {"shares": top, "missing": float(shares.get(MISSING, 0.0))}


def severity(method: str, score: float, threshold: float) -> float:
    """How far past its threshold a score is: above 1 means drifted.

    Distances: ``score / threshold``. p-values: ``log(p) / log(threshold)`` (1 at the threshold,
    growing as p falls). A column that could not be compared (no values on one side) is ``inf``.
    """
    if score is None or not math.isfinite(score):
        return math.inf
    if method in P_VALUES:
        return math.log(max(score, 1e-300)) / math.log(threshold)
    return score / threshold


def is_drifted(method: str, score: float, threshold: float) -> bool:
    """Evidently's rule: a distance at or above the threshold, a p-value below it."""
    if score is None or not math.isfinite(score):
        return True
    return score < threshold if method in P_VALUES else score >= threshold


def decision_mix(reference: pd.DataFrame, current: pd.DataFrame, max_change: float) -> pd.DataFrame:
    """Contact rate and the share of each offer among contacts, reference vs current.

    Returns
    -------
    pandas.DataFrame
        Rows ``contact_rate``, ``offer_0%`` .. ``offer_15%`` (shares of contacted decisions) and
        ``mean_delay_days``; columns ``reference``, ``current``, ``change``, ``moved`` (rates and
        shares whose absolute change is at least ``max_change``; the delay is never flagged).
    """
    def mix(frame: pd.DataFrame) -> dict[str, float]:
        contact = frame["contact"].astype(bool)
        out = {"contact_rate": float(contact.mean()) if len(frame) else math.nan}
        offers = frame.loc[contact, "offer_level"].astype(int)
        for k, pct in enumerate(OFFER_PERCENT):
            out[f"offer_{pct}%"] = float((offers == k).mean()) if len(offers) else math.nan
        out["mean_delay_days"] = float(frame["delay_days"].mean()) if len(frame) else math.nan
        return out

    ref, cur = mix(reference), mix(current)
    table = pd.DataFrame({"reference": ref, "current": cur})
    table["change"] = table["current"] - table["reference"]
    table["moved"] = (table["change"].abs() >= max_change) & (table.index != "mean_delay_days")
    return table


def calibration(joined: pd.DataFrame, bins: int) -> tuple[pd.DataFrame, float | None]:
    """Realised acceptance against the predicted probability of the offer made, per probability bin.

    Parameters
    ----------
    joined:
        From :func:`~retention.monitoring.join.join_outcomes`; only contacted decisions with a
        known ``accepted`` count.
    bins:
        Equal-width bins on [0, 1].

    Returns
    -------
    tuple
        The table (``bin``, ``count``, ``predicted``, ``realised``, ``gap``; non-empty bins only) and
        the expected calibration error (count-weighted mean absolute gap), None without outcomes.
    """
    cols = ["bin", "count", "predicted", "realised", "gap"]
    if joined.empty:
        return pd.DataFrame(columns=cols), None
    rows = joined[joined["contact"].astype(bool) & joined["accepted"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=cols), None
    p = rows["predicted_accept"].astype(float).clip(0, 1).to_numpy()
    y = rows["accepted"].astype(bool).astype(float).to_numpy()
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    table = []
    for b in range(bins):
        m = idx == b
        if m.any():
            table.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "count": int(m.sum()),
                          "predicted": float(p[m].mean()), "realised": float(y[m].mean()),
                          "gap": float(y[m].mean() - p[m].mean())})
    out = pd.DataFrame(table, columns=cols)
    ece = float((out["count"] * out["gap"].abs()).sum() / out["count"].sum())
    return out, ece


# ----------------------------------------------------------------------------- the result
@dataclass(frozen=True)
class ColumnDrift:
    """The drift of one column.

    Attributes
    ----------
    column, role, kind, method, threshold:
        As in the spec.
    score:
        Evidently's score (a distance, or a p-value); NaN when one side has no values.
    drifted:
        Past the threshold.
    severity:
        ``score / threshold`` for distances (see :func:`severity`); columns are ordered by it.
    reference, current:
        Summaries (:func:`summarise`).
    """

    column: str
    role: str
    kind: str
    method: str
    threshold: float
    score: float
    drifted: bool
    severity: float
    reference: dict[str, Any]
    current: dict[str, Any]


@dataclass(frozen=True)
class DriftResult:
    """The outcome of one drift check (render it with :mod:`retention.monitoring.report`).

    Attributes
    ----------
    columns:
        Every checked column, the most drifted (largest severity) first.
    share_drifted:
        Drifted columns / checked columns.
    drift_share:
        The spec's alarm share.
    detected:
        ``share_drifted >= drift_share`` or any prediction column drifted.
    reference_rows, current_rows:
        Rows compared.
    min_rows:
        The spec's smallest trusted window; ``noisy`` is True below it.
    decision_mix:
        See :func:`decision_mix`.
    calibration:
        See :func:`calibration` (empty without outcomes).
    ece:
        Its expected calibration error (None without outcomes).
    outcomes:
        Matched outcomes with a known ``accepted`` (the rows of the calibration table).
    calibration_min_rows:
        The spec's minimum of matched outcomes for a trusted ``ece``.
    window:
        ``start`` / ``end`` (ISO, UTC) and the window text, when known.
    snapshot:
        The Evidently snapshot (for the HTML and JSON report).
    """

    columns: tuple[ColumnDrift, ...]
    share_drifted: float
    drift_share: float
    detected: bool
    reference_rows: int
    current_rows: int
    min_rows: int
    decision_mix: pd.DataFrame
    calibration: pd.DataFrame
    ece: float | None
    outcomes: int
    calibration_min_rows: int = 30
    window: dict[str, Any] = field(default_factory=dict)
    snapshot: Any = None

    @property
    def drifted(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.drifted]

    @property
    def noisy(self) -> bool:
        return self.current_rows < self.min_rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: everything but the snapshot."""
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v

        mix = self.decision_mix.reset_index(names="metric")
        return {
            "detected": self.detected, "share_drifted": self.share_drifted, "drift_share": self.drift_share,
            "reference_rows": self.reference_rows, "current_rows": self.current_rows, "min_rows": self.min_rows,
            "noisy": self.noisy, "window": self.window,
            "columns": [{k: clean(v) for k, v in dataclasses.asdict(c).items()} for c in self.columns],
            "decision_mix": [{k: (clean(v.item()) if hasattr(v, "item") else clean(v)) for k, v in r.items()}
                             for r in mix.to_dict("records")],
            "calibration": {"ece": self.ece, "outcomes": self.outcomes, "min_rows": self.calibration_min_rows,
                            "bins": self.calibration.to_dict("records")},
        }


@lru_cache(maxsize=1)
def register_methods() -> None:
    """Register ``wasserstein_abs`` with Evidently: W1 in the column's own units (probability points)."""
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType
    from scipy.stats import wasserstein_distance

    def _wasserstein_abs(reference_data: pd.Series, current_data: pd.Series, feature_type: Any,
                         threshold: float) -> tuple[float, bool]:
        value = float(wasserstein_distance(reference_data, current_data))
        return value, value >= threshold

    register_stattest(StatTest(name="wasserstein_abs", display_name="Wasserstein distance (absolute units)",
                               allowed_feature_types=[ColumnType.Numerical], default_threshold=0.05),
                      _wasserstein_abs)


def run_evidently(reference: pd.DataFrame, current: pd.DataFrame, checks: Sequence[ColumnCheck],
                  drift_share: float) -> tuple[dict[str, float], Any]:
    """Evidently's DataDriftPreset over ``checks`` (frames from :func:`prepare`): scores and the snapshot."""
    import warnings

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    register_methods()
    names = [c.name for c in checks]
    definition = DataDefinition(numerical_columns=[c.name for c in checks if c.kind == "numeric"],
                                categorical_columns=[c.name for c in checks if c.kind == "categorical"])
    preset = DataDriftPreset(columns=names, drift_share=drift_share,
                             per_column_method={c.name: c.method for c in checks},
                             per_column_threshold={c.name: c.threshold for c in checks})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas/pydantic deprecation chatter inside Evidently
        snapshot = Report([preset], include_tests=True).run(
            Dataset.from_pandas(current[names], data_definition=definition),
            Dataset.from_pandas(reference[names], data_definition=definition))
    scores: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config") or {}
        if config.get("type", "").endswith(":ValueDrift") and config.get("column") in names:
            scores[config["column"]] = float(metric["value"])
    return scores, snapshot


def evidently_scores(reference: pd.DataFrame, current: pd.DataFrame, checks: Sequence[ColumnCheck]
                     ) -> dict[str, float]:
    """The same scores without building a report: Evidently's per-column drift function, called as
    its ``ValueDrift`` metric calls it (same stattest, threshold and NaN handling), minus the
    plotly widgets that take most of a report's time. For loops over many windows (tests,
    benchmarks); ``tests/unit/test_monitoring.py`` checks that both paths give the same scores.
    """
    import warnings

    from evidently.legacy.calculations.data_drift import get_one_column_drift
    from evidently.legacy.core import ColumnType
    from evidently.legacy.metric_results import DatasetColumns, DatasetUtilityColumns
    from evidently.legacy.options.data_drift import DataDriftOptions

    register_methods()
    scores: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in checks:
            kind = ColumnType.Numerical if c.kind == "numeric" else ColumnType.Categorical
            columns = DatasetColumns(
                utility_columns=DatasetUtilityColumns(date=None, id=None, target=None, prediction=None),
                target_type=None, task=None, num_feature_names=[c.name] if c.kind == "numeric" else [],
                cat_feature_names=[c.name] if c.kind == "categorical" else [], text_feature_names=[],
                datetime_feature_names=[], target_names=None)
            drift = get_one_column_drift(
                current_data=current[[c.name]], reference_data=reference[[c.name]], column_name=c.name,
                options=DataDriftOptions(all_features_stattest=c.method, all_features_threshold=c.threshold),
                dataset_columns=columns, column_type=kind, agg_data=True)
            scores[c.name] = float(drift.drift_score)
    return scores


def compute_drift(reference: pd.DataFrame, current: pd.DataFrame, spec: DriftSpec,
                  outcomes: pd.DataFrame | None = None, window: dict[str, Any] | None = None,
                  report: bool = True) -> DriftResult:
    """Compare a log window with the reference (both with the log's columns) under ``spec``.

    Parameters
    ----------
    reference:
        From :func:`reference_frame`.
    current:
        A window of the inference log (:func:`~retention.monitoring.window.current_window`).
    spec:
        The checks (:func:`~retention.monitoring.spec.load_spec`).
    outcomes:
        Outcomes joined to the window (:func:`~retention.monitoring.join.join_outcomes`), if any.
    window:
        Echoed into the result (start, end, text).
    report:
        Run Evidently's ``Report`` (the snapshot renders the HTML and JSON). False: the same scores
        from :func:`evidently_scores`, no snapshot (several times faster; for loops over windows).

    Raises
    ------
    EmptyWindowError
        When ``current`` has no rows.
    MonitoringError
        When the reference has no rows.
    """
    if current.empty:
        raise EmptyWindowError("the window holds no decisions; widen the window or check the ledger URL")
    if reference.empty:
        raise MonitoringError("the reference holds no rows: score the Telco train split first")
    ref, cur = prepare(reference, spec.columns), prepare(current, spec.columns)
    # A numeric column without a single value on one side cannot be compared: it counts as drifted.
    usable = [c for c in spec.columns if c.kind == "categorical"
              or (ref[c.name].notna().any() and cur[c.name].notna().any())]
    if report:
        scores, snapshot = run_evidently(ref, cur, usable, spec.drift_share)
    else:
        scores, snapshot = evidently_scores(ref, cur, usable), None
    cols = []
    for c in spec.columns:
        score = scores.get(c.name, math.nan)
        cols.append(ColumnDrift(c.name, c.role, c.kind, c.method, c.threshold, score,
                                is_drifted(c.method, score, c.threshold), severity(c.method, score, c.threshold),
                                summarise(ref[c.name], c.kind), summarise(cur[c.name], c.kind)))
    cols.sort(key=lambda d: (-d.severity, ROLES.index(d.role), d.column))
    share = sum(d.drifted for d in cols) / len(cols)
    detected = share >= spec.drift_share or any(d.drifted for d in cols if d.role == "prediction")
    table, ece = calibration(outcomes if outcomes is not None else pd.DataFrame(), spec.calibration_bins)
    return DriftResult(
        columns=tuple(cols), share_drifted=share, drift_share=spec.drift_share, detected=bool(detected),
        reference_rows=len(reference), current_rows=len(current), min_rows=spec.min_rows,
        decision_mix=decision_mix(reference, current, spec.decision_mix_max_change),
        calibration=table, ece=ece, outcomes=int(table["count"].sum()) if len(table) else 0,
        calibration_min_rows=spec.calibration_min_rows,
        window=dict(window or {}), snapshot=snapshot,
    )

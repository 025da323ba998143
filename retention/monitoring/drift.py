"""Drift of the inference log against a reference: the computation (rendering is in ``report``).

* **The checks are data**: ``monitoring/drift.yaml`` names each column, its role (feature or
  prediction), its kind (numeric or categorical), the Evidently method and threshold, the
  ``drift_share`` of the alarm, and the settings of the decision-mix and calibration tables.
  :func:`load_spec` reads and checks it.
* **The reference** is the Telco *train* split scored by the served service itself
  (:func:`reference_frame`): ``service.decide`` with ``dry_run`` against a temporary sqlite
  ledger, read back from that ledger's inference log. It passes exactly the production code.
* **The current window** is a slice of the inference log (:func:`current_window`), validated with
  the Great Expectations suite ``expectations/inference_window.json`` (:func:`validate_window`).
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
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention.errors import EmptyWindowError, MonitoringError
from retention.offers import OFFER_PERCENT
from retention.serving import inference_log

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = ROOT / "monitoring" / "drift.yaml"
MISSING = "(missing)"
ROLES = ("feature", "prediction")
# Evidently methods allowed per kind. Distances: larger = more drift, drifted when score >= threshold.
# p-values: drifted when p < threshold. (Evidently's "hellinger" fails on text categories in 0.7.23.)
DISTANCES = {"wasserstein", "wasserstein_abs", "psi", "jensenshannon", "kl_div", "ed"}
P_VALUES = {"ks", "chisquare"}
METHODS = {"numeric": {"wasserstein", "wasserstein_abs", "psi", "jensenshannon", "kl_div", "ed", "ks"},
           "categorical": {"jensenshannon", "psi", "kl_div", "chisquare"}}
LOG_COLUMNS = (*inference_log.FEATURE_COLUMNS, *inference_log.PREDICTION_COLUMNS)
TOP_CATEGORIES = 8
WINDOW = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# ----------------------------------------------------------------------------- the spec
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


# ----------------------------------------------------------------------------- windows
def parse_window(text: str) -> timedelta | None:
    """``"7d"`` -> 7 days, ``"24h"``, ``"30m"``, ``"2w"``; ``"all"`` -> None (the whole log)."""
    if str(text).strip().lower() == "all":
        return None
    m = WINDOW.match(str(text).lower())
    if not m or int(m.group(1)) == 0:
        raise MonitoringError(f"window '{text}' not understood: use a positive number with a unit m, h, d or w "
                              "(e.g. 24h, 7d, 2w), or all")
    return timedelta(**{UNITS[m.group(2)]: int(m.group(1))})


def current_window(engine, window: str, now: datetime | None = None, include_dry_runs: bool = True
                   ) -> tuple[pd.DataFrame, datetime | None, datetime]:
    """The log rows of ``window`` ending at ``now`` (replayed answers left out: they repeat a decision).

    Returns
    -------
    tuple
        ``(rows, start, end)``; ``start`` is None for ``all``.

    Raises
    ------
    EmptyWindowError
        When no decision was logged in the window.
    """
    span = parse_window(window)
    end = now or datetime.now(UTC)
    start = end - span if span is not None else None
    rows = inference_log.read_window(engine, start, end, include_dry_runs=include_dry_runs)
    rows = rows[~rows["replayed"].astype(bool)].reset_index(drop=True)
    if rows.empty:
        since = f"between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC" if start else "at all"
        dry = "" if include_dry_runs else " (dry runs excluded)"
        raise EmptyWindowError(f"no decisions were logged {since}{dry} (window {window}); widen the window "
                               "(e.g. --window all) or point --ledger-url at the serving database")
    return rows, start, end


def validate_window(rows: pd.DataFrame) -> None:
    """Great Expectations suite ``inference_window`` on a log window; raises DataValidationError if it fails."""
    from retention.data.validate import validate_frame

    if rows.empty:
        raise EmptyWindowError("the window holds no decisions; widen the window or check the ledger URL")
    validate_frame(rows, "inference_window").raise_for_failure()


# ----------------------------------------------------------------------------- the reference
def spread_local_times(n: int, end: datetime, days: float = 7.0, seed: int = 0) -> list[str]:
    """``n`` local times (ISO, no zone) on the ``days`` days up to ``end``, between 10:00 and 18:00."""
    rng = np.random.default_rng(seed)
    midnight = end.astimezone(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    back = rng.integers(0, max(1, int(math.ceil(days))), size=n)
    minutes = rng.integers(10 * 60, 18 * 60, size=n)
    return [(midnight - timedelta(days=int(d)) + timedelta(minutes=int(m))).isoformat()
            for d, m in zip(back, minutes, strict=True)]


def as_requests(customers: pd.DataFrame, now: datetime, spread_days: float = 7.0, seed: int = 0,
                dry_run: bool = True) -> pd.DataFrame:
    """Telco rows as decision requests: ``customer_id``, no label, no message, local times spread
    over the ``spread_days`` before ``now`` (unless the rows carry ``local_time``)."""
    req = customers.drop(columns=[c for c in ("Churn",) if c in customers.columns])
    if "customer_id" not in req.columns and "customerID" in req.columns:
        req = req.rename(columns={"customerID": "customer_id"})
    req = req.assign(dry_run=dry_run, with_message=False)  # messages change neither decisions nor predictions
    if "local_time" not in req.columns:
        req["local_time"] = spread_local_times(len(req), now, spread_days, seed)
    return req.reset_index(drop=True)


def send_traffic(service, customers: pd.DataFrame, now: datetime | None = None, spread_days: float = 7.0,
                 chunk_size: int = 2000, seed: int = 1, dry_run: bool = True) -> int:
    """Decide ``customers`` through ``service`` as live traffic, into the service's **own** ledger and log.

    For demos and smoke runs of the monitoring: with ``dry_run`` (the default) nothing is booked,
    every decision is logged (flagged ``dry_run``), and the ``drift`` step counts dry runs unless
    ``monitoring.include_dry_runs`` is false. Returns the number of decisions made.
    """
    now = now or datetime.now(UTC)
    req = as_requests(customers, now, spread_days, seed, dry_run)
    for lo in range(0, len(req), max(1, chunk_size)):
        service.decide(req.iloc[lo:lo + chunk_size].reset_index(drop=True), now=now)
    return len(req)


def reference_frame(service, customers: pd.DataFrame, now: datetime | None = None, spread_days: float = 7.0,
                    chunk_size: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Score ``customers`` with the serving ``service`` as dry runs; return their inference-log rows.

    The service decides against a **temporary** sqlite ledger (a fresh campaign, nobody contacted
    yet) and its inference log is read back, so the reference passes exactly the production code
    (request validation, scoring, guard, logging) and has the log's columns. Nothing is written to
    the service's own ledger; the service is restored afterwards.

    Parameters
    ----------
    service:
        A :class:`~retention.serving.service.DecisionService`.
    customers:
        Telco rows (``customerID`` or ``customer_id``, the feature columns; ``Churn`` is dropped).
    now:
        Decision time (default now, UTC): the end of the window being compared.
    spread_days:
        Rows without a ``local_time`` get one spread uniformly over the ``spread_days`` before
        ``now`` (10:00-18:00), so the calendar inputs of the acceptance model (month, weekday) are
        spread as in live traffic.
    chunk_size:
        Records per ``decide`` call.
    seed:
        Seed of the spread of local times.

    Returns
    -------
    pandas.DataFrame
        One row per customer, the columns of :func:`~retention.serving.inference_log.read_window`.
    """
    from retention.serving.ledger import ContactLedger

    now = now or datetime.now(UTC)
    req = as_requests(customers, now, spread_days, seed)
    saved = (service.ledger, service.serving, service._key, service._last_prune)
    with tempfile.TemporaryDirectory(prefix="retention-reference-") as tmp:
        ledger = ContactLedger(f"sqlite:///{Path(tmp) / 'reference.db'}", service.rules, service.serving.campaign,
                               service.serving.campaign_budget)
        service.ledger, service._key, service._last_prune = ledger, None, None
        service.serving = dataclasses.replace(service.serving, inference_log=True)
        try:
            for lo in range(0, len(req), max(1, chunk_size)):
                service.decide(req.iloc[lo:lo + chunk_size].reset_index(drop=True), now=now)
            rows = inference_log.read_window(ledger.engine)
        finally:
            ledger.engine.dispose()
            service.ledger, service.serving, service._key, service._last_prune = saved
    return rows


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
        From :func:`~retention.monitoring.outcomes.join_outcomes`; only contacted decisions with a
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
        A window of the inference log (:func:`current_window`).
    spec:
        The checks (:func:`load_spec`).
    outcomes:
        Outcomes joined to the window (:func:`~retention.monitoring.outcomes.join_outcomes`), if any.
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

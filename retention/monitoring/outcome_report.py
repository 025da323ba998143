"""The outcome report: computing it (:func:`compute_outcome_report`) and rendering it (the rest).

Computing and rendering are separate, as in Evidently and in :mod:`retention.monitoring.report`:
:func:`compute_outcome_report` turns the inference log and the recorded outcomes into an
:class:`OutcomeReportResult` (numbers only, no customer ids); :func:`plot_uplift`,
:func:`plot_calibration`, :func:`plot_performance` and :func:`summary_text` render it, and
:meth:`OutcomeReportResult.to_dict` is the JSON a client reads (``outcome_report/result.json``).

How to read it: docs/monitoring.md, "The outcome report".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from retention.config import MonitoringConfig
from retention.monitoring.join import join_outcomes
from retention.monitoring.uplift import (
    CalibrationCheck,
    Estimate,
    calibration,
    customer_outcomes,
    expected_performance,
    realised_performance,
    realised_uplift,
)

OFFER_NAMES = ("0%", "5%", "10%", "15%")


@dataclass
class OutcomeReportResult:
    """What the outcome report found (see :mod:`retention.monitoring.uplift` for each figure).

    Attributes
    ----------
    as_of, window:
        The report's date and the decision window it covers.
    customers:
        Eligible customers in the cohort, and how many are in the holdout.
    uplift:
        :func:`~retention.monitoring.uplift.realised_uplift` (``all`` and ``would_contact``).
    checks:
        Calibration on outcomes: the churn model on customers nobody contacted (holdout and
        not-contacted, whose churn the campaign did not touch), the acceptance model per offer level.
    reliability:
        Per check, the reliability table (score bin: mean predicted, observed rate, count).
    performance:
        The churn model's expected figures from scores (CBPE) on every customer of the cohort
        nobody contacted, and the realised ones on those whose labels have matured.
    """

    as_of: datetime
    window: dict[str, Any]
    customers: dict[str, int]
    uplift: dict[str, dict]
    checks: list[CalibrationCheck] = field(default_factory=list)
    reliability: dict[str, pd.DataFrame] = field(default_factory=dict)
    performance: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def alarms(self) -> list[CalibrationCheck]:
        return [c for c in self.checks if c.alarm]

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, Estimate):
                return clean(v.to_dict())
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            if isinstance(v, float | np.floating):
                return None if math.isnan(float(v)) else float(v)
            if isinstance(v, np.integer | np.bool_):
                return v.item()
            return v

        return clean({
            "as_of": self.as_of.isoformat(), "window": self.window, "customers": self.customers,
            "uplift": self.uplift, "calibration": [c.to_dict() for c in self.checks],
            "alarms": [c.name for c in self.alarms], "performance": self.performance,
            "definitions": {
                "churn_reduction": "holdout churn rate minus treated churn rate (positive: the campaign kept "
                                   "customers)",
                "net_revenue_uplift": "treated minus holdout revenue per customer with a revenue report",
                "all": "every eligible customer (intention to treat)",
                "would_contact": "customers the policy contacted, or in the holdout would have (its ghost action)",
                "interval": "95 %: Newcombe's hybrid score for rates, Welch for revenue, bootstrap for calibration"},
        })


def reliability_table(p: np.ndarray, y: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted against observed rate per equal-width score bin (the reliability diagram's points)."""
    frame = pd.DataFrame({"p": p, "y": y.astype(float)})
    frame["bin"] = np.clip((frame["p"] * bins).astype(int), 0, bins - 1)
    return frame.groupby("bin").agg(predicted=("p", "mean"), observed=("y", "mean"), count=("y", "size")).reset_index()


def compute_outcome_report(log: pd.DataFrame, found: pd.DataFrame, as_of: datetime, m: MonitoringConfig,
                           window: dict[str, Any] | None = None) -> OutcomeReportResult:
    """Every figure of the report from the cohort's decisions and their outcomes (pure).

    Parameters
    ----------
    log:
        Real decisions of the cohort (the inference log without dry runs).
    found:
        Recorded outcomes (:func:`~retention.monitoring.outcomes.read_outcomes`).
    as_of:
        The report's date: labels of decisions older than the outcome horizon have matured.
    m:
        ``monitoring``: horizon, alarm level and tolerance, bootstrap size, CBPE threshold.
    """
    customers = customer_outcomes(log, found, as_of, m.outcome_horizon_days, m.unreported_churn)
    uplift = realised_uplift(customers)
    # churn calibration where the campaign did not act: holdout and customers not contacted
    untouched = customers[~customers["contacted"]]
    labelled = untouched[untouched["churned"].notna()]
    matched = join_outcomes(log, found)
    matched = matched[matched["contact"].astype(bool) & matched["accepted"].notna()] if len(matched) else matched
    pairs = {"churn": (labelled["churn_risk"].to_numpy(float), labelled["churned"].astype(bool).to_numpy())}
    for k, name in enumerate(OFFER_NAMES):
        at = matched[matched["offer_level"].astype(int) == k] if len(matched) else matched
        if len(at):
            pairs[f"accept_{name}"] = (at["predicted_accept"].to_numpy(float), at["accepted"].astype(bool).to_numpy())
    family = len(pairs)
    checks, reliability = [], {}
    for i, (name, (p, y)) in enumerate(pairs.items()):
        checks.append(calibration(name, p, y, checks=family, alpha=m.alarm_alpha, tolerance=m.alarm_tolerance,
                                  min_outcomes=m.alarm_min_outcomes, n_boot=m.report_bootstrap, seed=i))
        if len(p):
            reliability[name] = reliability_table(p, y)
    performance = {"expected": expected_performance(untouched["churn_risk"].to_numpy(float), m.cbpe_threshold)}
    if len(labelled):
        performance["realised"] = realised_performance(*pairs["churn"], m.cbpe_threshold)
    performance["expected_on_matured"] = expected_performance(pairs["churn"][0], m.cbpe_threshold)
    return OutcomeReportResult(
        as_of=as_of, window=window or {},
        customers={"eligible": len(customers), "holdout": int((customers["group"] == "holdout").sum()),
                   "contacted": int(customers["contacted"].sum()),
                   "pending": int(customers["churned"].isna().sum())},
        uplift=uplift, checks=checks, reliability=reliability, performance=performance)


# ----------------------------------------------------------------------------- rendering
def _fmt(e: Estimate, pct: bool = True) -> str:
    if math.isnan(e.value):
        return "n/a (too few customers)"
    k = 100 if pct else 1
    unit = " pt" if pct else ""
    return f"{k * e.value:+.2f}{unit} [{k * e.low:+.2f}, {k * e.high:+.2f}]"


def summary_text(result: OutcomeReportResult, run_id: str | None = None) -> str:
    """The lines a person reads: the uplift with its interval, what the models predicted, the alarms."""
    c = result.customers
    lines = [f"outcome report as of {result.as_of:%Y-%m-%d}: {c['eligible']:,} eligible customers "
             f"({c['holdout']:,} in the holdout, {c['contacted']:,} contacted, {c['pending']:,} with churn pending)"]
    scopes = (("all", "all eligible customers"), ("would_contact", "customers the policy (would have) contacted"))
    for scope, title in scopes:
        u = result.uplift[scope]
        h, t = u["holdout"], u["treated"]
        if not h["customers"] or not t["customers"]:
            lines.append(f"  {title}: no comparison yet (holdout {h['customers']}, treated {t['customers']} labelled)")
            continue
        lines.append(f"  {title}: churn {100 * h['churn_rate']:.1f}% in the holdout (n={h['customers']:,}) vs "
                     f"{100 * t['churn_rate']:.1f}% treated (n={t['customers']:,}); churn reduction "
                     f"{_fmt(u['churn_reduction'])} (95 %), predicted {100 * u['predicted_reduction']:+.2f} pt")
        if not math.isnan(u["net_revenue_uplift"].value):
            lines.append(f"    net revenue per customer, treated minus holdout: {_fmt(u['net_revenue_uplift'], False)}")
    for check in result.checks:
        flag = "ALARM" if check.alarm else "ok"
        lines.append(f"  calibration {check.name}: observed/expected {check.o_e.value:.2f} "
                     f"[{check.o_e.low:.2f}, {check.o_e.high:.2f}], ECE {check.ece.value:.3f}, n={check.n:,}: {flag}")
    perf = result.performance
    if "realised" in perf:
        lines.append(f"  churn model AUC: expected {perf['expected_on_matured']['auc']:.3f} from scores, "
                     f"realised {perf['realised']['auc']:.3f} on matured labels")
    elif perf.get("expected"):
        lines.append(f"  churn model AUC expected from scores (no labels yet): {perf['expected']['auc']:.3f}")
    if result.alarms:
        lines.append("  next: the models' probabilities disagree with outcomes; retrain or recalibrate "
                     "(`make run`), and check the world changed (drift report)")
    if run_id:
        lines.append(f"  MLflow run {run_id}: artifacts outcome_report/ and plots/")
    return "\n".join(lines)


def plot_uplift(result: OutcomeReportResult):
    """Churn rate per group with 95 % intervals, and realised against predicted reduction."""
    import matplotlib.pyplot as plt

    from retention.monitoring.uplift import wilson

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, scope, title in ((axes[0], "all", "all eligible"), (axes[1], "would_contact", "(would be) contacted")):
        u = result.uplift[scope]
        for x, group, colour in ((0, "holdout", "#999999"), (1, "treated", "#1f77b4")):
            g = u[group]
            if not g["customers"]:
                continue
            lo, hi = wilson(g["churned"], g["customers"])
            ax.bar(x, 100 * g["churn_rate"], color=colour, width=0.6)
            ax.errorbar(x, 100 * g["churn_rate"], yerr=[[100 * (g["churn_rate"] - lo)], [100 * (hi - g["churn_rate"])]],
                        color="black", capsize=6)
        red = u["churn_reduction"]
        text = "reduction " + _fmt(red) + f"\npredicted {100 * u['predicted_reduction']:+.2f} pt"
        ax.set_title(f"{title}\n{text}", fontsize=9)
        ax.set_xticks([0, 1], [f"{g}\nn={u[g]['customers']:,}" for g in ("holdout", "treated")])
        ax.set_ylabel("churn rate, % (95 % interval)")
    fig.tight_layout()
    return fig


def plot_calibration(result: OutcomeReportResult):
    """Reliability diagrams: predicted against observed per score bin, one panel per model."""
    import matplotlib.pyplot as plt

    names = list(result.reliability)
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(3.2 * max(len(names), 1), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        table = result.reliability[name]
        check = next(c for c in result.checks if c.name == name)
        ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=1)
        ax.scatter(table["predicted"], table["observed"], s=10 + 60 * table["count"] / table["count"].max(),
                   color="#d62728" if check.alarm else "#1f77b4")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}: O/E {check.o_e.value:.2f}{' ALARM' if check.alarm else ''}\nn={check.n:,}", fontsize=9)
        ax.set_xlabel("predicted")
    axes[0][0].set_ylabel("observed")
    fig.tight_layout()
    return fig


def plot_performance(result: OutcomeReportResult):
    """The churn model's expected (CBPE) against realised AUC and confusion counts."""
    import matplotlib.pyplot as plt

    perf = result.performance
    fig, ax = plt.subplots(figsize=(6, 3.4))
    keys = ["tp", "fp", "fn", "tn"]
    exp = perf.get("expected_on_matured", perf.get("expected", {}))
    real = perf.get("realised", {})
    x = np.arange(len(keys))
    ax.bar(x - 0.2, [exp.get(k, 0) for k in keys], width=0.4, label=f"expected (AUC {exp.get('auc', math.nan):.3f})")
    if real:
        ax.bar(x + 0.2, [real[k] for k in keys], width=0.4, label=f"realised (AUC {real['auc']:.3f})")
    ax.set_xticks(x, ["true pos.", "false pos.", "false neg.", "true neg."])
    ax.set_title("churn model: expected from scores vs realised (matured labels)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

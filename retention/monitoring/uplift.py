"""The outcome report's statistics: realised uplift, calibration on outcomes, performance before labels.

Pure functions over the joined log (:func:`customer_outcomes`); :mod:`retention.monitoring.outcome_report`
renders them and the ``outcome_report`` step logs them. Each figure comes with a 95 % interval.

* **Realised uplift** (:func:`realised_uplift`). The holdout is drawn by a keyed hash of the customer
  id (:mod:`retention.serving.assignment`), so holdout and treated customers are comparable groups
  and their difference is the campaign's causal effect *per eligible customer* (intention to treat:
  the treated group includes customers the policy left alone). ``churn_reduction`` is the holdout's
  churn rate minus the treated group's (positive: fewer churned), with Newcombe's hybrid score
  interval; net revenue per customer is compared with Welch's normal interval. The same comparison
  restricted to the customers the policy contacted, or would have contacted in the holdout (its
  logged "ghost" action), measures the effect where the campaign acts.
* **Calibration on outcomes** (:func:`calibration`). Observed over expected, ECE and the logistic
  calibration slope, with bootstrap intervals (ECE's bias-corrected: the plain bootstrap of ECE is
  biased upwards). The alarm is a calibration-in-the-large test, ``z = (O - E) / sqrt(sum p(1-p))``,
  Bonferroni-corrected over the checks of one report so that a faithful world alarms in at most
  ``alpha`` of windows, and only for a deviation larger than a tolerance.
* **Performance before labels** (:func:`expected_performance`): confidence-based performance
  estimation (CBPE, as NannyML does it). With calibrated scores, a customer scored ``p`` is a
  positive with probability ``p``, so the expected confusion matrix at a threshold and the expected
  ROC AUC follow from the scores alone; :func:`realised_performance` gives the same figures once
  labels have matured.

Hand-written because no library in the stack computes these on logged decisions: scipy gives the
quantiles, scikit-learn the AUC.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from scipy.stats import norm

from retention.monitoring.offpolicy import bias_corrected_interval

Z95 = float(norm.ppf(0.975))


@dataclass(frozen=True)
class Estimate:
    """A figure with its 95 % interval and the sample behind it."""

    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion (``(nan, nan)`` when ``n`` is 0)."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def difference_of_proportions(x0: int, n0: int, x1: int, n1: int) -> Estimate:
    """``x0/n0 - x1/n1`` with Newcombe's hybrid score interval (his method 10, 1998).

    Better coverage than the Wald interval at the small rates and unequal groups of a holdout.
    """
    if n0 == 0 or n1 == 0:
        return Estimate(math.nan, math.nan, math.nan, n0 + n1)
    p0, p1 = x0 / n0, x1 / n1
    l0, u0 = wilson(x0, n0)
    l1, u1 = wilson(x1, n1)
    d = p0 - p1
    low = d - math.sqrt((p0 - l0) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u0 - p0) ** 2 + (p1 - l1) ** 2)
    return Estimate(d, low, high, n0 + n1)


def difference_of_means(a: np.ndarray, b: np.ndarray) -> Estimate:
    """``mean(a) - mean(b)`` with Welch's normal interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return Estimate(math.nan, math.nan, math.nan, len(a) + len(b))
    d = float(a.mean() - b.mean())
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return Estimate(d, d - Z95 * se, d + Z95 * se, len(a) + len(b))


# ----------------------------------------------------------------------------- the join, per customer
def customer_outcomes(log: pd.DataFrame, found: pd.DataFrame, as_of: datetime, horizon_days: float,
                      unreported: str = "auto") -> pd.DataFrame:
    """One row per customer of the cohort: group, what was done, what was predicted, what happened.

    Parameters
    ----------
    log:
        Real decisions (no dry runs or replays) of the cohort, from the inference log.
    found:
        Stored outcomes (:func:`~retention.monitoring.outcomes.read_outcomes`).
    as_of:
        The report's date. A customer without a churn report counts as retained once the horizon
        has passed since their latest decision; before that their churn label is pending.
    horizon_days:
        ``monitoring.outcome_horizon_days``.
    unreported:
        What a missing churn report means before the horizon (``monitoring.unreported_churn``):
        ``pending`` (left out until the horizon has passed), ``retained`` (the business reports churn
        events only), or ``auto``: ``retained`` when the cohort's reports hold churns but not a single
        ``churned = false`` (a churn-event feed), ``pending`` otherwise.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_key``: ``group`` (holdout | treated), ``contacted``, ``would_contact``
        (the policy's arm, the ghost one in the holdout), ``churn_risk`` and ``predicted_accept``
        of the latest decision, ``predicted_reduction`` (risk x acceptance of the offer made, the
        models' view of what the contact saves), ``churned`` (True/False/None pending),
        ``revenue`` (summed; NaN when none reported), ``opted_out``, ``decisions``.
    """
    cols = ["group", "contacted", "would_contact", "churn_risk", "predicted_accept", "predicted_reduction",
            "churned", "revenue", "opted_out", "decisions"]
    keep = pd.Series(True, index=log.index)
    for flag in ("replayed", "dry_run"):
        if flag in log:
            keep &= ~log[flag].fillna(False).astype(bool)
    d = log[keep & log["assignment"].notna()].copy() if "assignment" in log else log.iloc[:0].copy()
    if d.empty:
        return pd.DataFrame(columns=cols).rename_axis("customer_key")
    d["logged_at"] = pd.to_datetime(d["logged_at"], utc=True)
    d = d.sort_values("logged_at")
    level = d["offer_level"].astype(int).clip(0, 3).to_numpy()
    accept = d[[f"accept_{k}" for k in range(4)]].to_numpy(dtype=float)
    d["predicted_accept"] = np.where(d["contact"].astype(bool), accept[np.arange(len(d)), level], 0.0)
    d["predicted_reduction"] = d["churn_risk"].astype(float) * d["predicted_accept"]
    ghost = d["policy_contact"] if "policy_contact" in d else d["contact"]
    d["would_contact"] = ghost.where(ghost.notna(), d["contact"]).astype(bool)
    d["holdout"] = d["assignment"].eq("holdout")
    g = d.groupby("customer_key")
    out = pd.DataFrame({
        "holdout_any": g["holdout"].any(), "holdout_all": g["holdout"].all(),
        "contacted": g["contact"].any().astype(bool), "would_contact": g["would_contact"].any(),
        "churn_risk": g["churn_risk"].last().astype(float), "predicted_accept": g["predicted_accept"].max(),
        "predicted_reduction": g["predicted_reduction"].max(), "decisions": g.size(),
        "last_decided": g["logged_at"].last()})
    out = out[out["holdout_any"] == out["holdout_all"]]  # a salt change mid-cohort: the customer is in neither
    out["group"] = np.where(out["holdout_all"], "holdout", "treated")
    requests = set(d["request_id"].dropna())
    f = found[found["customer_key"].isin(out.index)
              & (found["request_id"].isna() | found["request_id"].isin(requests))] if len(found) else found
    churned = f[f["churned"].notna()].groupby("customer_key")["churned"].agg(lambda s: bool(s.astype(bool).any()))
    matured = out["last_decided"] + timedelta(days=horizon_days) <= pd.Timestamp(as_of)
    reported = f["churned"].dropna().astype(bool) if len(f) else pd.Series(dtype=bool)
    events_only = len(reported) > 0 and bool(reported.all())
    if unreported == "retained" or (unreported == "auto" and events_only):
        matured = pd.Series(True, index=out.index)
    label = pd.Series(churned, index=out.index).astype(object)
    label = label.where(label.notna(), np.where(matured, False, None))
    out["churned"] = label.where(label.notna(), None)
    if len(f) and "revenue" in f:
        out["revenue"] = f[f["revenue"].notna()].groupby("customer_key")["revenue"].sum().reindex(out.index)
    else:
        out["revenue"] = np.nan
    opted = (f[f["opted_out"].notna()].groupby("customer_key")["opted_out"].any() if len(f) and "opted_out" in f
             else pd.Series(dtype=bool))
    out["opted_out"] = out.index.isin(opted[opted.astype(bool)].index)
    return out[cols]


# ----------------------------------------------------------------------------- realised uplift
def realised_uplift(customers: pd.DataFrame) -> dict[str, dict]:
    """Holdout against treated, for all eligible customers and for those the policy (would have) contacted.

    Returns
    -------
    dict
        ``{"all": ..., "would_contact": ...}``, each with the groups' sizes and churn rates,
        ``churn_reduction`` (holdout minus treated churn rate, an :class:`Estimate`),
        ``predicted_reduction`` (the models' expected reduction for the same customers),
        ``net_revenue_uplift`` (treated minus holdout revenue per customer with a report) and
        ``pending`` (customers whose churn label has not matured: left out).
    """
    out = {}
    for scope, part in (("all", customers), ("would_contact", customers[customers["would_contact"]])):
        labelled = part[part["churned"].notna()]
        hold, treat = labelled[labelled["group"] == "holdout"], labelled[labelled["group"] == "treated"]
        xh, xt = int(hold["churned"].astype(bool).sum()), int(treat["churned"].astype(bool).sum())
        rev_h = hold["revenue"].dropna().to_numpy(dtype=float)
        rev_t = treat["revenue"].dropna().to_numpy(dtype=float)
        out[scope] = {
            "holdout": {"customers": len(hold), "churned": xh, "churn_rate": xh / len(hold) if len(hold) else math.nan,
                        "revenue_per_customer": float(rev_h.mean()) if len(rev_h) else math.nan},
            "treated": {"customers": len(treat), "churned": xt,
                        "churn_rate": xt / len(treat) if len(treat) else math.nan,
                        "revenue_per_customer": float(rev_t.mean()) if len(rev_t) else math.nan},
            "churn_reduction": difference_of_proportions(xh, len(hold), xt, len(treat)),
            "predicted_reduction": float(treat["predicted_reduction"].mean()) if len(treat) else math.nan,
            "net_revenue_uplift": difference_of_means(rev_t, rev_h),
            "pending": int(part["churned"].isna().sum()),
        }
    return out


# ----------------------------------------------------------------------------- calibration on outcomes
@dataclass(frozen=True)
class CalibrationCheck:
    """One model on one population: observed/expected, ECE and slope with intervals, and the alarm."""

    name: str
    n: int
    observed: float
    expected: float
    o_e: Estimate
    ece: Estimate
    slope: Estimate
    z: float
    alarm: bool

    def to_dict(self) -> dict:
        d = asdict(self)
        return d


def ece_of(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width bins of the score."""
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    total = 0.0
    for b in np.unique(idx):
        m = idx == b
        total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / len(p))


def slope_of(p: np.ndarray, y: np.ndarray) -> float:
    """Logistic calibration slope: the coefficient of ``logit(p)`` in a logistic regression of ``y`` (1 is ideal)."""
    from sklearn.linear_model import LogisticRegression

    if y.min() == y.max():
        return math.nan
    x = np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1))
    return float(LogisticRegression(C=1e6, max_iter=200).fit(x[:, None], y).coef_[0, 0])


def calibration(name: str, p: np.ndarray, y: np.ndarray, *, checks: int, alpha: float, tolerance: float,
                min_outcomes: int, n_boot: int = 300, seed: int = 0, intervals: bool = True) -> CalibrationCheck:
    """Calibration of scores ``p`` on outcomes ``y`` (module docstring); ``checks`` is the Bonferroni family size.

    The alarm fires when ``|z|`` exceeds the ``1 - alpha / (2 checks)`` normal quantile, the
    observed/expected ratio is off by more than ``tolerance``, and there are ``min_outcomes``.
    ``intervals=False`` skips the bootstrap and the slope (the alarm needs neither; for simulations).
    """
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    n = len(p)
    nan = Estimate(math.nan, math.nan, math.nan, n)
    if n == 0:
        return CalibrationCheck(name, 0, math.nan, math.nan, nan, nan, nan, math.nan, False)
    o, e = float(y.sum()), float(p.sum())
    var = float((p * (1 - p)).sum())
    z = (o - e) / math.sqrt(var) if var > 0 else 0.0
    ratio = o / e if e > 0 else math.nan
    critical = float(norm.ppf(1 - alpha / (2 * max(checks, 1))))
    alarm = bool(n >= min_outcomes and abs(z) > critical and not math.isnan(ratio) and abs(ratio - 1) > tolerance)
    if not intervals:
        return CalibrationCheck(name, n, o, e, Estimate(ratio, math.nan, math.nan, n), nan, nan, z, alarm)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    oe_d = np.array([y[i].sum() / max(p[i].sum(), 1e-12) for i in draws])
    ece_d = np.array([ece_of(p[i], y[i]) for i in draws])
    est_ece = ece_of(p, y)
    lo, hi = np.percentile(oe_d, [2.5, 97.5])
    e_lo, e_hi = bias_corrected_interval(ece_d, est_ece)
    slope = slope_of(p, y)
    if n >= 30 and not math.isnan(slope):
        sl_d = np.array([slope_of(p[i], y[i]) for i in draws[: max(50, n_boot // 3)]])
        sl_d = sl_d[~np.isnan(sl_d)]
        s_lo, s_hi = (np.percentile(sl_d, [2.5, 97.5]) if len(sl_d) else (math.nan, math.nan))
    else:
        s_lo = s_hi = math.nan
    return CalibrationCheck(name, n, o, e, Estimate(ratio, float(min(lo, ratio)), float(max(hi, ratio)), n),
                            Estimate(est_ece, e_lo, e_hi, n), Estimate(slope, float(s_lo), float(s_hi), n), z, alarm)


# ----------------------------------------------------------------------------- performance before labels
def _auc_expected(p: np.ndarray) -> float:
    """Expected ROC AUC when customer i is positive with probability ``p_i`` independently (ties count half)."""
    order = np.argsort(p, kind="mergesort")
    s = p[order]
    neg_below = np.cumsum(1 - s) - (1 - s)  # expected negatives scored strictly below, before tie fix
    # tie correction: within a block of equal scores, pairs count half
    _, start, counts = np.unique(s, return_index=True, return_counts=True)
    num = 0.0
    for st, c in zip(start, counts, strict=True):
        block = s[st:st + c]
        below = neg_below[st]
        num += float((block * below).sum() + 0.5 * block.sum() * (1 - block).sum()
                     - 0.5 * (block * (1 - block)).sum())
    pos, neg = p.sum(), (1 - p).sum()
    den = pos * neg - (p * (1 - p)).sum()
    return float(num / den) if den > 0 else math.nan


def expected_performance(p: np.ndarray, threshold: float) -> dict[str, float]:
    """CBPE: expected AUC and confusion matrix (counts) at ``threshold`` from calibrated scores alone."""
    p = np.asarray(p, dtype=float)
    hit = p >= threshold
    return {"auc": _auc_expected(p) if len(p) > 1 else math.nan,
            "tp": float(p[hit].sum()), "fp": float((1 - p[hit]).sum()),
            "fn": float(p[~hit].sum()), "tn": float((1 - p[~hit]).sum()), "n": float(len(p))}


def realised_performance(p: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    """The same figures as :func:`expected_performance` from matured labels."""
    from sklearn.metrics import roc_auc_score

    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=bool)
    hit = p >= threshold
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else math.nan
    return {"auc": auc, "tp": float((hit & y).sum()), "fp": float((hit & ~y).sum()),
            "fn": float((~hit & y).sum()), "tn": float((~hit & ~y).sum()), "n": float(len(p))}

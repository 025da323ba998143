"""Which decision an outcome is about: the join of recorded outcomes to the inference log.

Labels mature by decision, not by window (:func:`outcome_cohort`), and an outcome meets the decision
it names and no other (:func:`join_outcomes`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from retention.monitoring.outcomes import read_outcomes
from retention.serving.inference_log import read_window


def join_outcomes(log: pd.DataFrame, found: pd.DataFrame) -> pd.DataFrame:
    """Attach outcomes to the decisions they are about (pure).

    * An outcome with a ``request_id`` belongs to that decision and to no other: when the decision
      is not in ``log`` (decided outside the cohort read), the outcome is not matched here.
    * One without a ``request_id`` belongs to the customer's latest decision, contacted or not,
      logged on or before its ``outcome_date`` (a churn is an outcome of not contacting too).
    * Dry runs and replayed rows are never matched: a dry run contacted nobody, and a replay repeats
      an earlier decision.

    Parameters
    ----------
    log:
        Inference-log rows (:func:`~retention.serving.inference_log.read_window`), usually the
        cohort of :func:`outcome_cohort`.
    found:
        Stored outcomes (:func:`read_outcomes`).

    Returns
    -------
    pandas.DataFrame
        One row per matched outcome: ``contact``, ``offer_level``, ``predicted_accept`` (the
        acceptance probability of the offer made), ``churn_risk``, ``accepted``, ``churned``.
    """
    cols = ["contact", "offer_level", "predicted_accept", "churn_risk", "accepted", "churned"]
    if log.empty or found.empty:
        return pd.DataFrame(columns=cols)
    keep = pd.Series(True, index=log.index)
    for flag in ("replayed", "dry_run"):
        if flag in log:
            keep &= ~log[flag].fillna(False).astype(bool)
    decisions = log[keep].copy()
    if decisions.empty:
        return pd.DataFrame(columns=cols)
    accept = decisions[[f"accept_{k}" for k in range(4)]].to_numpy(dtype=float)
    level = decisions["offer_level"].astype(int).clip(0, 3).to_numpy()
    decisions["predicted_accept"] = accept[np.arange(len(decisions)), level]
    found = found.reset_index(drop=True)
    by_request = decisions[decisions["request_id"].notna()].drop_duplicates("request_id", keep="last")
    direct = found[found["request_id"].notna()].merge(by_request[["request_id", *cols[:4]]], on="request_id",
                                                      how="inner")
    matched = [direct[cols]]
    by_customer = found[found["request_id"].isna() & found["customer_key"].notna()].copy()
    if len(by_customer):
        # the customer's latest decision logged on or before the outcome's date
        decisions["day"] = pd.to_datetime(pd.to_datetime(decisions["logged_at"], utc=True).dt.date)
        by_customer["day"] = pd.to_datetime(by_customer["outcome_date"])
        right = decisions.sort_values("day")[["day", "customer_key", *cols[:4]]]
        latest = pd.merge_asof(by_customer.sort_values("day"), right, on="day", by="customer_key",
                               direction="backward")
        matched.append(latest.dropna(subset=["contact"])[cols])
    parts = [m for m in matched if len(m)]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    for c in ("accepted", "churned"):
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out


def outcome_cohort(engine: Engine, start: datetime | None, end: datetime,
                   horizon_days: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The decisions whose outcomes may have arrived by ``end``, and those outcomes.

    Labels mature by decision, not by window: a churn reported weeks after its decision still
    meets it. So the cohort is every real decision (no dry runs) logged from ``start`` minus the
    outcome horizon up to ``end``, and the outcomes dated from the cohort's first day on.

    Returns
    -------
    tuple of pandas.DataFrame
        (decisions, outcomes), ready for :func:`join_outcomes`.
    """
    since = None if start is None else start - timedelta(days=horizon_days)
    decisions = read_window(engine, since, end, include_dry_runs=False)
    return decisions, read_outcomes(engine, since=since.date() if since is not None else None)

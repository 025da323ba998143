"""A simulated world whose truth differs from the models, for the outcome report to be checked against.

The models say a customer churns with probability ``churn_risk`` and accepts offer ``k`` with
probability ``accept_k``, and an accepting customer stays (:mod:`retention.policy.env`). This world
disagrees on purpose, as the real one will (:class:`WorldConfig`):

* acceptance is ``accept_factor`` times the predicted one (0.6: the Bank-marketing proxy is optimistic);
* churn without contact is ``churn_shift`` times the score (capped at 0.95);
* a contacted customer opts out with probability ``opt_out``;
* in one segment (tenure of at least ``harm_tenure`` months) a contact that is not accepted *raises*
  churn by ``harm``: long-standing customers reminded that they can leave.

:func:`simulate_decisions` sends customers through the **real** serving path (request validation,
models, policy, guard, holdout and exploration, ledger and inference log) over simulated days, on the
ledger it is given. :func:`draw_outcomes` draws what happened and :func:`true_uplift` says what the
report should find. Outcomes go in through :func:`~retention.monitoring.outcomes.record_outcomes`,
the interface a client uses. ``make run`` ends with such a window and its outcome report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from retention.offers import OFFER_PERCENT


@dataclass(frozen=True)
class WorldConfig:
    """The simulated truth (module docstring); the defaults are ``make run``'s world."""

    accept_factor: float = 0.6
    churn_shift: float = 1.2
    opt_out: float = 0.02
    harm_tenure: float = 48.0
    harm: float = 0.08
    days: int = 7
    horizon_days: float = 30.0
    offer_months: float = 3.0


def simulate_decisions(service, customers: pd.DataFrame, world: WorldConfig, now: datetime | None = None,
                       seed: int = 0) -> pd.DataFrame:
    """Decide ``customers`` (Telco rows) through ``service`` over ``world.days`` simulated days, booked for real.

    The days end ``world.horizon_days`` before ``now``, so every label has matured by ``now`` and every
    outcome date is in the past. Returns the inference-log rows of these decisions (``request_id``
    ``sim-<seed>-<i>``), with the raw ``customer_id`` added back for the outcome file.
    """
    from retention.monitoring.window import as_requests
    from retention.serving.inference_log import read_window

    now = now or datetime.now(UTC)
    first = now - timedelta(days=world.horizon_days + world.days)
    req = as_requests(customers, first, spread_days=0.0, seed=seed, dry_run=False)
    req["request_id"] = [f"sim-{seed}-{i}" for i in range(len(req))]
    day_of = np.arange(len(req)) % world.days
    for d in range(world.days):
        part = req[day_of == d].reset_index(drop=True)
        if len(part):
            service.decide(part, now=first + timedelta(days=d, hours=12))
    log = read_window(service.ledger.engine, first - timedelta(days=1), now, include_dry_runs=False)
    log = log[log["request_id"].isin(set(req["request_id"]))].copy()
    ids = dict(zip(req["request_id"], req["customer_id"], strict=True))
    log["customer_id"] = log["request_id"].map(ids)
    return log.reset_index(drop=True)


def _truth(log: pd.DataFrame, world: WorldConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per decision: churn without contact, acceptance of the offer made, extra churn of a refused contact."""
    q = np.clip(log["churn_risk"].to_numpy(float) * world.churn_shift, 0.0, 0.95)
    level = log["offer_level"].astype(int).clip(0, 3).to_numpy()
    accept = log[[f"accept_{k}" for k in range(4)]].to_numpy(float)[np.arange(len(log)), level]
    a = np.clip(accept * world.accept_factor, 0.0, 1.0)
    harm = np.where(log["tenure"].to_numpy(float) >= world.harm_tenure, world.harm, 0.0)
    return q, a, harm, level


def churn_probability(q: np.ndarray, a: np.ndarray, harm: np.ndarray, contact: np.ndarray) -> np.ndarray:
    """P(churn) given the action: an accepted offer keeps the customer; a refused one adds the harm."""
    return np.where(contact, (1 - a) * np.clip(q + harm, 0, 1), q)


def true_uplift(log: pd.DataFrame, world: WorldConfig) -> dict[str, float]:
    """The churn reduction the report should find: expected holdout churn minus expected treated churn.

    Taken over every eligible customer with the action the campaign takes (a holdout customer's
    ghost action stands in for it), and over those the policy contacts.
    """
    q, a_taken, harm, _ = _truth(log, world)
    ghost = log["policy_contact"].where(log["policy_contact"].notna(), log["contact"]).astype(bool).to_numpy()
    holdout = log["assignment"].eq("holdout").to_numpy()
    contact = np.where(holdout, ghost, log["contact"].astype(bool).to_numpy())
    ghost_level = log["policy_offer"].where(log["policy_offer"].notna(), log["offer_level"]).astype(int).clip(0, 3)
    accept = log[[f"accept_{k}" for k in range(4)]].to_numpy(float)
    a = np.where(holdout, np.clip(accept[np.arange(len(log)), ghost_level.to_numpy()] * world.accept_factor, 0, 1),
                 a_taken)
    reduction = q - churn_probability(q, a, harm, contact)
    would = ghost | log["contact"].astype(bool).to_numpy()
    return {"all": float(reduction.mean()), "would_contact": float(reduction[would].mean()) if would.any() else 0.0}


def draw_outcomes(log: pd.DataFrame, world: WorldConfig, rng: np.random.Generator,
                  today: datetime | None = None) -> pd.DataFrame:
    """What happened after each decision in ``log``, as outcome rows (one per decision, by ``request_id``).

    Columns: ``request_id``, ``customer_key``, ``accepted`` and ``offer_level_accepted`` (contacted
    only), ``churned`` and ``churn_date``, ``opted_out``, ``revenue`` (what the customer paid over the
    horizon, after any discount), ``outcome_date`` (the churn date, else the end of the horizon,
    never after ``today``).
    """
    today = (today or datetime.now(UTC)).date()
    q, a, harm, level = _truth(log, world)
    contact = log["contact"].astype(bool).to_numpy()
    n = len(log)
    accepted = contact & (rng.random(n) < a)
    churned = rng.random(n) < np.where(accepted, 0.0, churn_probability(q, 0.0 * a, harm, contact))
    opted = contact & (rng.random(n) < world.opt_out)
    decided = pd.to_datetime(log["logged_at"], utc=True).dt.date.to_numpy()
    churn_after = rng.uniform(1, world.horizon_days, n)
    months = np.where(churned, churn_after, world.horizon_days) / 30.0
    pct = np.array(OFFER_PERCENT, dtype=float)[level] / 100.0
    discount = np.where(accepted, pct * np.minimum(months, world.offer_months), 0.0)
    revenue = log["MonthlyCharges"].to_numpy(float) * (months - discount)
    end = [min(d + timedelta(days=int(round(c if ch else world.horizon_days))), today)
           for d, c, ch in zip(decided, churn_after, churned, strict=True)]
    return pd.DataFrame({
        "request_id": log["request_id"].to_numpy(), "customer_key": log["customer_key"].to_numpy(),
        "accepted": np.where(contact, accepted, None), "offer_level_accepted": np.where(accepted, level, None),
        "churned": churned, "churn_date": [e if ch else None for e, ch in zip(end, churned, strict=True)],
        "opted_out": np.where(contact, opted, None), "revenue": np.round(revenue, 2), "outcome_date": end})

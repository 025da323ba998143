"""Customer pools for the simulator, scored once by the champion tabular models.

A :class:`CustomerPool` holds, for every customer of a Telco split, what the simulator needs:

* ``churn_risk[i]``: calibrated P(churn within the campaign) from ``churn-risk``;
* ``accept[i, k, c]``: calibrated P(accept offer level k | c earlier contacts this campaign)
  from ``offer-accept``. Within a campaign only ``campaign_contacts = c + 1`` changes; there is
  no earlier-campaign history (``days_since_last_contact`` missing, ``previous_contacts = 0``,
  ``previous_outcome = "nonexistent"``), the channel is SMS (``cellular``), and the calendar is
  averaged out over the acceptance model's training calendar, as in serving;
* ``value[i]``: revenue retained when a churn is prevented, ``MonthlyCharges * ltv_months``;
* ``offer_cost[i, k]``: discount paid if offer k is accepted,
  ``pct_k * MonthlyCharges * offer_months``.

Scoring the whole pool up front makes a simulator step a table lookup (no model call).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from retention.config import EnvConfig
from retention.policy import OFFER_PERCENT
from retention.tabular.features import RISK_FEATURES, Calendar, offer_acceptance


@dataclass(frozen=True)
class CustomerPool:
    customer_ids: np.ndarray
    churn_risk: np.ndarray  # (P,)
    accept: np.ndarray  # (P, 4, fatigue_cap)
    value: np.ndarray  # (P,)
    offer_cost: np.ndarray  # (P, 4)
    monthly: np.ndarray  # (P,)

    def __len__(self) -> int:
        return len(self.customer_ids)

    def subset(self, idx: np.ndarray) -> CustomerPool:
        return CustomerPool(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def offer_costs(monthly: np.ndarray, offer_months: float) -> np.ndarray:
    pct = np.asarray(OFFER_PERCENT, dtype=float) / 100.0
    return np.asarray(monthly, dtype=float)[:, None] * pct[None, :] * offer_months


def build_pool(customers: pd.DataFrame, risk_model, accept_model, env: EnvConfig,
               calendar: Calendar) -> CustomerPool:
    """Score ``customers`` (processed Telco rows) with the two models; see module docstring.

    ``calendar`` is the acceptance model's training calendar
    (:func:`~retention.tabular.features.calendar_distribution`).
    """
    risk = risk_model.predict_proba(customers[list(RISK_FEATURES)])[:, 1]
    cache: dict = {}
    accept = np.stack([offer_acceptance(accept_model, customers, float(c + 1), calendar, cache)
                       for c in range(env.fatigue_cap)], axis=2)
    monthly = customers["MonthlyCharges"].to_numpy(dtype=float)
    return CustomerPool(
        customer_ids=customers["customerID"].to_numpy(),
        churn_risk=np.clip(risk, 0.0, 1.0),
        accept=np.clip(accept, 0.0, 1.0),
        value=monthly * env.ltv_months,
        offer_cost=offer_costs(monthly, env.offer_months),
        monthly=monthly,
    )


def synthetic_pool(n: int, env: EnvConfig, seed: int = 0) -> CustomerPool:
    """A pool with plausible random probabilities: for unit tests (no models needed)."""
    rng = np.random.default_rng(seed)
    monthly = rng.uniform(20, 110, n)
    base = rng.uniform(0.02, 0.15, n)
    lift = np.array([1.0, 1.4, 1.9, 2.6])
    decay = 0.85 ** np.arange(env.fatigue_cap)
    accept = np.clip(base[:, None, None] * lift[None, :, None] * decay[None, None, :], 0, 1)
    return CustomerPool(
        customer_ids=np.array([f"C{i:05d}" for i in range(n)]),
        churn_risk=rng.beta(1.2, 3.0, n),
        accept=accept,
        value=monthly * env.ltv_months,
        offer_cost=offer_costs(monthly, env.offer_months),
        monthly=monthly,
    )

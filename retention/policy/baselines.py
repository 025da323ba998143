"""Baseline policies. Each maps observations (and the guard's mask) to actions.

Expected net value of offer k for the customer under review (used by the value-based rules)::

    EV_k = a_k * (r * V - d_k) - contact_cost

with r the churn risk remaining, a_k the acceptance probability, V the revenue a prevented churn
retains and d_k the discount. All of them come from the observation and the env config, so the
rules can be served from the same inputs as PPO.

The rules that know the business respect the guard's mask. ``TopOfferEveryone`` deliberately does
not: it is the naive policy, and evaluation counts its violations.
"""

from __future__ import annotations

import numpy as np

from retention.config import EnvConfig
from retention.policy import OFFER_PERCENT
from retention.policy.env import VALUE_SCALE

WAIT = 6  # review again after 1 + 6 = 7 days


def expected_values(obs: np.ndarray, env: EnvConfig) -> np.ndarray:
    """EV_k for each row of ``obs`` (B, 4); see the module docstring."""
    risk, accept = obs[:, 0].astype(float), obs[:, 1:5].astype(float)
    monthly = obs[:, 10].astype(float) * VALUE_SCALE
    value = monthly * env.ltv_months
    discount = monthly[:, None] * np.asarray(OFFER_PERCENT)[None, :] / 100.0 * env.offer_months
    return accept * (risk[:, None] * value[:, None] - discount) - env.contact_cost


def expected_spend(obs: np.ndarray, env: EnvConfig) -> np.ndarray:
    """Expected cost of a contact with offer k (B, 4): contact cost + a_k * d_k."""
    monthly = obs[:, 10].astype(float) * VALUE_SCALE
    discount = monthly[:, None] * np.asarray(OFFER_PERCENT)[None, :] / 100.0 * env.offer_months
    return env.contact_cost + obs[:, 1:5].astype(float) * discount


def _actions(contact: np.ndarray, offer: np.ndarray, delay: int | np.ndarray = WAIT) -> np.ndarray:
    n = len(contact)
    return np.column_stack([contact.astype(np.int64), offer.astype(np.int64), np.broadcast_to(delay, n)])


class Policy:
    """Interface: ``act(obs, contact_ok, offer_ok) -> actions (B, 3)``; ``begin`` sees each new cohort."""

    name = "policy"

    def begin(self, cohort_obs: list[np.ndarray], budgets: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Called with the day-0 observations of every cohort customer when campaigns start."""

    def act(self, obs: np.ndarray, contact_ok: np.ndarray, offer_ok: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class NeverContact(Policy):
    name = "never_contact"

    def act(self, obs, contact_ok, offer_ok):
        return _actions(np.zeros(len(obs), bool), np.zeros(len(obs), int))


class TopOfferEveryone(Policy):
    """Contact every customer at every review with the top offer, ignoring the rules."""

    name = "top_offer_everyone"

    def act(self, obs, contact_ok, offer_ok):
        return _actions(np.ones(len(obs), bool), np.full(len(obs), 3))


class RiskThreshold(Policy):
    """Contact when churn risk remaining >= ``threshold``, with a fixed offer (allowed ones only)."""

    name = "risk_threshold"

    def __init__(self, threshold: float = 0.5, offer: int = 2):
        self.threshold, self.offer = threshold, offer

    def act(self, obs, contact_ok, offer_ok):
        levels = np.arange(4)[None, :]
        allowed = offer_ok & (levels <= self.offer)
        offer = np.where(allowed.any(axis=1), 3 - np.argmax(allowed[:, ::-1], axis=1), 0)
        contact = (obs[:, 0] >= self.threshold) & contact_ok & allowed.any(axis=1)
        return _actions(contact, offer)


class GreedyExpectedValue(Policy):
    """At each review, the allowed offer with the highest EV, if that EV is positive."""

    name = "greedy_ev"

    def __init__(self, env: EnvConfig):
        self.env = env

    def act(self, obs, contact_ok, offer_ok):
        ev = np.where(offer_ok, expected_values(obs, self.env), -np.inf)
        best = ev.argmax(axis=1)
        contact = contact_ok & (ev.max(axis=1) > 0)
        return _actions(contact, best)


class BudgetedKnapsack(Policy):
    """Best offer per customer by EV, taken in order of EV per expected cost until the budget is spent.

    At the start of each campaign, every cohort customer's best offer (highest EV > 0) is ranked by
    EV / expected spend. Customers are taken in that order while the expected spend fits the budget.
    The ratio of the last one taken is the campaign's ``cutoff``. At a review, a customer is contacted
    once, with that best offer, if their ratio clears the cutoff and the guard allows it.
    """

    name = "knapsack"

    def __init__(self, env: EnvConfig):
        self.env = env
        self.cutoffs: np.ndarray = np.zeros(1)

    def _ratio(self, obs):
        ev = expected_values(obs, self.env)
        best = ev.argmax(axis=1)
        rows = np.arange(len(obs))
        return ev[rows, best] / expected_spend(obs, self.env)[rows, best], best, ev[rows, best]

    def begin(self, cohort_obs, budgets):
        cutoffs = []
        for obs, budget in zip(cohort_obs, budgets, strict=True):
            ratio, best, ev = self._ratio(obs)
            spend = expected_spend(obs, self.env)[np.arange(len(obs)), best]
            order = np.argsort(-ratio)
            order = order[ev[order] > 0]
            taken = order[np.cumsum(spend[order]) <= budget]
            cutoffs.append(ratio[taken[-1]] if len(taken) else np.inf)
        self.cutoffs = np.asarray(cutoffs)

    def act(self, obs, contact_ok, offer_ok):
        ratio, best, ev = self._ratio(obs)
        first = obs[:, 8] == 0  # fatigue count: never contacted this campaign
        cutoff = self.cutoffs if len(self.cutoffs) == len(obs) else np.full(len(obs), self.cutoffs.min())
        contact = first & (ev > 0) & (ratio >= cutoff) & contact_ok & offer_ok[np.arange(len(obs)), best]
        return _actions(contact, best)


def all_baselines(env: EnvConfig, risk_threshold: float, threshold_offer: int) -> list[Policy]:
    return [NeverContact(), TopOfferEveryone(), RiskThreshold(risk_threshold, threshold_offer),
            GreedyExpectedValue(env), BudgetedKnapsack(env)]

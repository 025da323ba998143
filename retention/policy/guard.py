"""The guard: hard constraints enforced at decision time, whatever the policy says.

One function pair serves the environment's action mask, the evaluator and serving alike.
All inputs are arrays over a batch of decisions (one row per customer decision):

* **fatigue**: a customer may receive at most ``fatigue_cap`` contacts in a campaign;
* **cooldown**: at least ``cooldown_days`` must pass between two contacts of a customer;
* **budget**: a contact is allowed only if the remaining budget covers its worst case,
  the contact cost plus the offer's discount (paid only if accepted). So spend can never
  exceed the budget, whatever the customers answer.

:func:`guard` repairs an action: an unaffordable offer becomes the largest affordable lower
one; a contact that breaks fatigue, cooldown or the budget becomes "no contact". The delay
is never changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEVER_CONTACTED = 10**6  # days_since_contact for a customer never contacted


@dataclass(frozen=True)
class GuardRules:
    """The business's hard rules."""

    fatigue_cap: int
    cooldown_days: int
    contact_cost: float


def action_mask(
    budget_remaining: np.ndarray,
    fatigue_count: np.ndarray,
    days_since_contact: np.ndarray,
    offer_cost: np.ndarray,
    rules: GuardRules,
    enforce: frozenset[str] = frozenset({"budget", "fatigue", "cooldown"}),
) -> tuple[np.ndarray, np.ndarray]:
    """Allowed actions for each decision.

    Parameters
    ----------
    budget_remaining, fatigue_count, days_since_contact : arrays of shape (B,)
    offer_cost : array of shape (B, 4)
        Discount paid if offer level k is accepted.
    rules : GuardRules
    enforce : set of constraint names to enforce (default: all three).

    Returns
    -------
    contact_ok : bool array (B,)
        Whether contacting is allowed at all.
    offer_ok : bool array (B, 4)
        Which offer levels are allowed if contacting.
    """
    budget_remaining = np.asarray(budget_remaining, dtype=float)
    b = budget_remaining.shape[0]
    offer_ok = np.ones((b, 4), dtype=bool)
    if "budget" in enforce:
        offer_ok = budget_remaining[:, None] + 1e-9 >= rules.contact_cost + np.asarray(offer_cost, dtype=float)
    contact_ok = offer_ok.any(axis=1)
    if "fatigue" in enforce:
        contact_ok &= np.asarray(fatigue_count) < rules.fatigue_cap
    if "cooldown" in enforce:
        contact_ok &= np.asarray(days_since_contact) >= rules.cooldown_days
    return contact_ok, offer_ok


def guard(
    actions: np.ndarray,
    budget_remaining: np.ndarray,
    fatigue_count: np.ndarray,
    days_since_contact: np.ndarray,
    offer_cost: np.ndarray,
    rules: GuardRules,
) -> tuple[np.ndarray, np.ndarray]:
    """Repair ``actions`` (B, 3: contact, offer_level, delay) so no hard constraint is broken.

    Returns
    -------
    safe : int array (B, 3)
    overridden : bool array (B,)
        True where the action was changed.
    """
    actions = np.asarray(actions, dtype=np.int64).reshape(-1, 3)
    contact_ok, offer_ok = action_mask(budget_remaining, fatigue_count, days_since_contact, offer_cost, rules)
    safe = actions.copy()
    wants = safe[:, 0] == 1
    # Largest allowed offer at or below the requested one (offers are ordered by cost).
    levels = np.arange(4)[None, :]
    candidates = offer_ok & (levels <= safe[:, 1:2])
    has_lower = candidates.any(axis=1)
    best_lower = np.where(has_lower, 3 - np.argmax(candidates[:, ::-1], axis=1), 0)
    requested_ok = offer_ok[np.arange(len(safe)), safe[:, 1]]
    downgrade = wants & contact_ok & ~requested_ok & has_lower
    safe[downgrade, 1] = best_lower[downgrade]
    drop = wants & (~contact_ok | (~requested_ok & ~has_lower))
    safe[drop, 0] = 0
    overridden = (safe != actions).any(axis=1)
    return safe, overridden

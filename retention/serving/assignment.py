"""Assignment at decision time: a persistent holdout, and ε-exploration with logged propensities.

Serving is otherwise deterministic, and a deterministic policy's log cannot tell what doing nothing,
or what another policy, would have achieved. Two randomisations make that measurable:

* **Holdout.** A keyed hash of the normalised customer id, under its own salt
  (``serving.holdout_salt``), puts ``serving.holdout_share`` of customers (10 % by default) in a
  persistent holdout. A holdout customer is never contacted. The policy still decides, and its
  "ghost" action is logged: realised uplift is then treated against holdout, for everyone and for
  those the policy would have contacted.
* **Exploration.** Outside the holdout, with probability ε (``serving.explore_epsilon``) the arm is
  drawn uniformly from the arms the guard allows; otherwise the policy's (guarded) arm is taken.
  The arms are "no contact" and "contact with offer level k" (k = 0..3). The probability of every
  arm, ``(1 - ε) [a = policy arm] + ε / |allowed|``, is logged with the decision, so off-policy
  estimators can weight outcomes by the arm's propensity.

Both draws are pure functions of keyed hashes, never of a random generator's state: the holdout of a
customer is stable across requests, processes and restarts, and the exploration draw depends only
on the decision id (the ``request_id``, else the customer and the decision's UTC date), so a
replayed request gets the same arm, and so does the same customer asked about again that day.
Exploration never leaves the guard's mask: the budget, fatigue and
cooldown rules hold for every arm it can take.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# arm a = (contact, offer_level): arm 0 is "no contact", arm 1 + k is "contact with offer level k"
ARMS = ((0, 0), (1, 0), (1, 1), (1, 2), (1, 3))
N_ARMS = len(ARMS)
HOLDOUT, EXPLORE, EXPLOIT = "holdout", "explore", "exploit"


def unit_hashes(key: str, texts: Sequence[str]) -> np.ndarray:
    """Two uniform numbers in [0, 1) per text, from HMAC-SHA256 under ``key``: shape (n, 2).

    53 bits each (a double's mantissa) from disjoint bytes of the digest, so the two are independent.
    """
    out = np.empty((len(texts), 2))
    k = key.encode()
    for i, text in enumerate(texts):
        digest = hmac.new(k, text.encode(), hashlib.sha256).digest()
        out[i, 0] = (int.from_bytes(digest[:8], "big") >> 11) / 2.0**53
        out[i, 1] = (int.from_bytes(digest[8:16], "big") >> 11) / 2.0**53
    return out


def in_holdout(customer_ids: Sequence[str], salt: str, share: float) -> np.ndarray:
    """True for the customers in the persistent holdout (``share`` of all ids, stable per id)."""
    if share <= 0.0 or not len(customer_ids):
        return np.zeros(len(customer_ids), dtype=bool)
    return unit_hashes(f"holdout:{salt}", customer_ids)[:, 0] < share


def arm_of(contact: np.ndarray, offer_level: np.ndarray) -> np.ndarray:
    """The arm index of each (contact, offer_level) action."""
    return np.where(np.asarray(contact, dtype=bool), 1 + np.asarray(offer_level, dtype=np.int64), 0)


def allowed_arms(contact_ok: np.ndarray, offer_ok: np.ndarray) -> np.ndarray:
    """(n, 5) mask of the arms the guard allows: "no contact" always, each offer when contact and it are."""
    contact_ok = np.asarray(contact_ok, dtype=bool)
    return np.column_stack([np.ones(len(contact_ok), dtype=bool), contact_ok[:, None] & np.asarray(offer_ok, bool)])


@dataclass(frozen=True)
class Assignment:
    """What was assigned to each decision (arrays of length n; ``probs`` is (n, 5))."""

    arm: np.ndarray  # the arm taken
    policy_arm: np.ndarray  # the policy's guarded arm: the "ghost" action of a holdout customer
    group: list[str]  # holdout | explore | exploit
    probs: np.ndarray  # the probability of every arm under the logging policy (holdout: no contact, 1)
    propensity: np.ndarray  # probs[arm]


def assign(policy_arm: np.ndarray, allowed: np.ndarray, holdout: np.ndarray, epsilon: float,
           draws: np.ndarray) -> Assignment:
    """Assign an arm to each decision (pure; see the module docstring).

    Parameters
    ----------
    policy_arm:
        The policy's arm after the guard, (n,); always allowed.
    allowed:
        The guard's arm mask, (n, 5).
    holdout:
        Holdout membership, (n,).
    epsilon:
        Exploration probability in [0, 1].
    draws:
        Two uniform numbers per decision, (n, 2) (:func:`unit_hashes` of the decision ids): the first
        decides explore or exploit, the second the explored arm.
    """
    n = len(policy_arm)
    policy_arm = np.asarray(policy_arm, dtype=np.int64)
    allowed = np.asarray(allowed, dtype=bool).copy()
    allowed[np.arange(n), policy_arm] = True
    k = allowed.sum(axis=1)
    probs = epsilon * allowed / k[:, None]
    probs[np.arange(n), policy_arm] += 1.0 - epsilon
    explore = draws[:, 0] < epsilon
    # the explored arm: the floor(u * k)-th allowed arm, uniform over the allowed ones
    rank = np.minimum((draws[:, 1] * k).astype(np.int64), k - 1)
    explored = np.argmax(np.cumsum(allowed, axis=1) > rank[:, None], axis=1)
    arm = np.where(explore, explored, policy_arm)
    held = np.asarray(holdout, dtype=bool)
    arm[held] = 0
    probs[held] = np.eye(N_ARMS)[0]
    group = [HOLDOUT if h else EXPLORE if e else EXPLOIT for h, e in zip(held, explore, strict=True)]
    return Assignment(arm, policy_arm, group, probs, probs[np.arange(n), arm])

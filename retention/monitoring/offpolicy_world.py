"""A synthetic decision log whose truth is known, for checking the off-policy estimators.

Customers with about two decisions each, five arms (no contact, offers 0..3), an expected reward per
arm that depends on the customer (risk, value, the offer's lift and cost), and noise. The logging
policy is a noisy champion's arm with ε-exploration over the allowed arms, assigned exactly as
serving assigns (:func:`retention.serving.assignment.assign`). Used by the tests and by
``benchmarks/offpolicy.py``; it is not a model of any real business.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retention.serving.assignment import allowed_arms, assign, unit_hashes

ARMS = 5


@dataclass
class World:
    """One logged window: per decision the arm taken, its propensity, the reward, and the truth."""

    arms: np.ndarray
    propensity: np.ndarray
    logging: np.ndarray  # (n, 5) the logging policy's probabilities
    rewards: np.ndarray
    truth: np.ndarray  # (n, 5) expected reward of each arm
    predicted: np.ndarray  # (n, 5) a reward model: the truth with an error
    allowed: np.ndarray
    customers: np.ndarray
    costs: np.ndarray

    def deterministic(self, arm: np.ndarray) -> np.ndarray:
        """The probabilities of the policy that always takes ``arm``."""
        probs = np.zeros((len(arm), ARMS))
        probs[np.arange(len(arm)), arm] = 1.0
        return probs

    def value(self, probs: np.ndarray) -> float:
        """The true value per decision of the policy with these probabilities."""
        return float(np.mean(np.sum(probs * self.truth, axis=1)))


def simulated_world(n: int = 20_000, epsilon: float = 0.1, seed: int = 0) -> World:
    """``n`` logged decisions with exploration ``epsilon`` (module docstring); ``seed`` fixes everything."""
    rng = np.random.default_rng(seed)
    customers = np.sort(rng.integers(0, n // 2, size=n))  # about two decisions per customer
    risk = rng.beta(2, 5, size=n)
    value = rng.uniform(200, 1200, size=n)
    lift = np.array([0.0, 0.05, 0.08, 0.12, 0.2])
    cost = np.array([0.0, 0.1, 3.0, 6.0, 9.0])
    truth = risk[:, None] * value[:, None] * lift[None, :] * (1 - 0.5 * risk[:, None]) - cost[None, :]
    allowed = allowed_arms(rng.random(n) < 0.9, rng.random((n, 4)) < 0.8)
    champion = np.argmax(np.where(allowed, truth + rng.normal(0, 15, size=truth.shape), -np.inf), axis=1)
    got = assign(champion, allowed, np.zeros(n, dtype=bool), epsilon,
                 unit_hashes("explore:world", [f"{seed}-{i}" for i in range(n)]))
    rewards = truth[np.arange(n), got.arm] + rng.normal(0, 20, size=n)
    predicted = truth + rng.normal(0, 10, size=truth.shape)
    return World(got.arm, got.propensity, got.probs, rewards, truth, predicted, allowed, customers,
                 cost[got.arm])

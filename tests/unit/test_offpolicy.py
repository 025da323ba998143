"""Off-policy estimators and the off-policy gate (issue #25), against a simulated world whose truth is known.

The world: customers with one to three decisions each, five arms (no contact, offers 0..3), an
expected reward per arm that depends on the customer, and noise. The logging policy is the
champion's arm with ε = 0.1 exploration over the allowed arms, as serving logs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from retention.monitoring.offpolicy import (
    bias_corrected_interval,
    compare,
    doubly_robust,
    effective_sample_size,
    importance_weights,
    off_policy_gate,
    snips,
)
from retention.serving.assignment import allowed_arms, assign, unit_hashes

ARMS = 5


@dataclass
class World:
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
        probs = np.zeros((len(arm), ARMS))
        probs[np.arange(len(arm)), arm] = 1.0
        return probs

    def value(self, probs: np.ndarray) -> float:
        return float(np.mean(np.sum(probs * self.truth, axis=1)))


def world(n: int = 20_000, epsilon: float = 0.1, seed: int = 0) -> World:
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


def test_on_the_logging_policy_itself_the_estimators_reproduce_its_on_policy_value():
    w = world()
    weights = importance_weights(w.logging, w.arms, w.propensity)
    np.testing.assert_allclose(weights, 1.0)
    assert snips(w.rewards, weights) == pytest.approx(np.mean(w.rewards), rel=1e-12)  # exactly the mean
    se = np.std(w.rewards) / np.sqrt(len(w.rewards))
    assert abs(doubly_robust(w.rewards, weights, w.logging, w.predicted, w.arms) - np.mean(w.rewards)) < 3 * se
    assert effective_sample_size(weights) == pytest.approx(len(weights))
    same = compare(w.rewards, w.arms, w.propensity, w.logging, w.logging, w.predicted, w.customers, w.costs,
                   n_boot=50)
    assert same.difference == 0.0 and same.low == 0.0 == same.high


@pytest.mark.parametrize("estimator", ["dr", "snips"])
def test_a_challengers_value_is_estimated_within_its_interval_of_the_truth(estimator):
    w = world(seed=1)
    greedy = w.deterministic(np.argmax(np.where(w.allowed, w.predicted, -np.inf), axis=1))  # another policy
    result = compare(w.rewards, w.arms, w.propensity, w.logging, greedy, w.predicted, w.customers, w.costs,
                     estimator=estimator, n_boot=300)
    true_difference = w.value(greedy) - w.value(w.logging)
    assert result.low <= result.difference <= result.high  # an interval contains its own estimate
    assert result.low <= true_difference <= result.high
    if estimator == "dr":  # SNIPS has only its ~900 effective decisions here: noisier, still covered above
        assert abs(result.challenger - w.value(greedy)) < 0.05 * abs(w.value(greedy))  # within 5 % at n = 20,000
    assert result.customers < result.decisions  # resampled by customer
    assert 0 < result.ess < len(w.rewards)


def test_the_gate_promotes_a_better_challenger_and_refuses_a_harmful_one():
    w = world(seed=2)
    better = w.deterministic(np.argmax(np.where(w.allowed, w.truth, -np.inf), axis=1))
    worse = w.deterministic(np.argmin(np.where(w.allowed, w.truth, np.inf), axis=1))
    assert w.value(better) > w.value(w.logging) > w.value(worse)
    good = compare(w.rewards, w.arms, w.propensity, w.logging, better, w.predicted, w.customers, w.costs, n_boot=200)
    verdict = off_policy_gate(good, budget_per_decision=10.0, simulator_passed=True)
    assert verdict.decided and verdict.promote, verdict.reasons
    harmful = compare(w.rewards, w.arms, w.propensity, w.logging, worse, w.predicted, w.customers, w.costs,
                      n_boot=200)
    verdict = off_policy_gate(harmful, budget_per_decision=10.0, simulator_passed=True)
    assert verdict.decided and not verdict.promote and "not shown better" in verdict.reasons[0]
    assert not off_policy_gate(good, budget_per_decision=0.01, simulator_passed=True).promote  # over budget
    assert not off_policy_gate(good, budget_per_decision=10.0, simulator_passed=False).promote


def test_without_enough_logged_data_the_gate_decides_nothing():
    w = world(n=600, seed=3)
    better = w.deterministic(np.argmax(np.where(w.allowed, w.truth, -np.inf), axis=1))
    result = compare(w.rewards, w.arms, w.propensity, w.logging, better, w.predicted, w.customers, w.costs,
                     n_boot=100)
    verdict = off_policy_gate(result, budget_per_decision=10.0, simulator_passed=True)
    assert not verdict.decided and not verdict.promote and "not enough logged data" in verdict.reasons[0]


def test_the_bias_corrected_interval_contains_its_estimate_and_a_zero_propensity_is_refused():
    draws = np.random.default_rng(4).normal(1.0, 1.0, size=2000) ** 2  # skewed
    for estimate in (0.5, 1.0, 2.0):
        low, high = bias_corrected_interval(draws, estimate)
        assert low <= estimate <= high
    with pytest.raises(ValueError, match="propensity is 0"):
        importance_weights(np.ones((2, 5)) / 5, np.array([0, 1]), np.array([0.2, 0.0]))

"""Off-policy estimators and the off-policy gate (issue #25), against a simulated world whose truth is known.

The world: customers with one to three decisions each, five arms (no contact, offers 0..3), an
expected reward per arm that depends on the customer, and noise. The logging policy is the
champion's arm with ε = 0.1 exploration over the allowed arms, as serving logs it.
"""

from __future__ import annotations

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
from retention.monitoring.offpolicy_world import simulated_world as world


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

"""Off-policy evaluation from the decision log: what would another policy have earned?

The served decisions were drawn by a known *logging* policy mu (the champion, ε-explored: every
arm's probability is in the inference log, :mod:`retention.serving.assignment`). A challenger
policy pi gives each logged decision its own probabilities over the same arms. With rewards r_i
observed for the arms a_i taken, the estimators (Dudík, Langford and Li, 2011; Swaminathan and
Joachims, 2015) are:

* **self-normalised IPS**: ``V = sum_i w_i r_i / sum_i w_i`` with ``w_i = pi(a_i|x_i) / mu(a_i|x_i)``;
* **doubly robust**: ``V = mean_i [ sum_a pi(a|x_i) q(x_i, a) + w_i (r_i - q(x_i, a_i)) ]``, where
  ``q`` is the predicted reward of each arm (the log's ``arm_values``): unbiased when either the
  propensities or ``q`` are right, with less variance than IPS when ``q`` is good;
* **effective sample size**: ``(sum_i w_i)^2 / sum_i w_i^2``, the number of decisions the estimate is
  worth. A challenger far from the logging policy has a small one.

Intervals come from a bootstrap **clustered by customer** (a customer decided several times is one
draw, so repeated decisions do not pass for independent evidence), and the challenger is compared
with the champion on the **same** resamples: the interval is of the paired difference.

:func:`off_policy_gate` decides a promotion from these numbers and says why; without enough logged
data it decides nothing. No library implements clustered, paired DR for a logged CSV of this shape
(OBP's estimators assume i.i.d. rounds and no clusters), so the maths is here, in pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def importance_weights(target_probs: np.ndarray, arms: np.ndarray, propensity: np.ndarray) -> np.ndarray:
    """``w_i = pi(a_i | x_i) / mu(a_i | x_i)`` for target probabilities ``(n, arms)`` and logged propensities."""
    propensity = np.asarray(propensity, dtype=float)
    if np.any(propensity <= 0):
        raise ValueError("a logged propensity is 0 or less: the arm taken could not have been taken")
    return np.asarray(target_probs, dtype=float)[np.arange(len(arms)), np.asarray(arms)] / propensity


def snips(rewards: np.ndarray, weights: np.ndarray) -> float:
    """Self-normalised inverse propensity scoring."""
    total = float(np.sum(weights))
    return float(np.sum(weights * rewards) / total) if total > 0 else float("nan")


def doubly_robust(rewards: np.ndarray, weights: np.ndarray, target_probs: np.ndarray, arm_values: np.ndarray,
                  arms: np.ndarray) -> float:
    """The doubly robust estimate (module docstring); ``arm_values`` is ``q(x_i, a)``, shape (n, arms)."""
    q = np.asarray(arm_values, dtype=float)
    direct = np.sum(np.asarray(target_probs, dtype=float) * q, axis=1)
    return float(np.mean(direct + weights * (rewards - q[np.arange(len(arms)), np.asarray(arms)])))


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size of importance weights."""
    w = np.asarray(weights, dtype=float)
    denominator = float(np.sum(w**2))
    return float(np.sum(w) ** 2 / denominator) if denominator > 0 else 0.0


@dataclass(frozen=True)
class Comparison:
    """Challenger against champion on the same logged decisions (values per decision)."""

    estimator: str
    champion: float
    challenger: float
    difference: float
    low: float  # 95 % interval of the paired difference (clustered bootstrap)
    high: float
    ess: float  # of the challenger's weights
    decisions: int
    customers: int
    challenger_spend: float  # estimated spend per decision under the challenger (same estimator)


def compare(rewards: np.ndarray, arms: np.ndarray, propensity: np.ndarray, champion_probs: np.ndarray,
            challenger_probs: np.ndarray, arm_values: np.ndarray, clusters: np.ndarray, costs: np.ndarray,
            estimator: str = "dr", n_boot: int = 500, seed: int = 0) -> Comparison:
    """Estimate both policies' value per decision and their paired difference with a 95 % interval.

    Parameters
    ----------
    rewards, arms, propensity:
        Per logged decision: the realised reward, the arm taken, its logged probability.
    champion_probs, challenger_probs:
        Each policy's probabilities over the arms for every logged decision, (n, arms).
    arm_values:
        Predicted reward of each arm, (n, arms) (for ``dr``).
    clusters:
        The customer of each decision: the bootstrap resamples customers, not decisions.
    costs:
        Realised spend of each decision (the offer paid plus the message): its estimate under the
        challenger is checked against the budget.
    estimator:
        ``dr`` or ``snips``.
    """
    if estimator not in ("dr", "snips"):
        raise ValueError(f"estimator must be 'dr' or 'snips', got {estimator!r}")
    rewards, costs = np.asarray(rewards, dtype=float), np.asarray(costs, dtype=float)
    w_champion = importance_weights(champion_probs, arms, propensity)
    w_challenger = importance_weights(challenger_probs, arms, propensity)

    def value(idx: np.ndarray, w: np.ndarray, probs: np.ndarray, r: np.ndarray) -> float:
        if estimator == "snips":
            return snips(r[idx], w[idx])
        return doubly_robust(r[idx], w[idx], probs[idx], arm_values[idx], arms[idx])

    everyone = np.arange(len(rewards))
    champion = value(everyone, w_champion, champion_probs, rewards)
    challenger = value(everyone, w_challenger, challenger_probs, rewards)
    _, cluster_ids = np.unique(np.asarray(clusters), return_inverse=True)
    members = [np.flatnonzero(cluster_ids == c) for c in range(cluster_ids.max() + 1)]
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([members[c] for c in rng.integers(0, len(members), size=len(members))])
        diffs[b] = (value(idx, w_challenger, challenger_probs, rewards)
                    - value(idx, w_champion, champion_probs, rewards))
    low, high = bias_corrected_interval(diffs, challenger - champion)
    spend = snips(costs, w_challenger)  # no model of spend per arm: the self-normalised IPS estimate
    return Comparison(estimator, champion, challenger, challenger - champion, low, high,
                      effective_sample_size(w_challenger), len(rewards), len(members), spend)


def bias_corrected_interval(draws: np.ndarray, estimate: float, level: float = 0.95) -> tuple[float, float]:
    """The bias-corrected (BC) percentile interval of bootstrap ``draws`` around ``estimate`` (Efron, 1981).

    SNIPS is biased in small samples, so the plain percentile interval can sit beside its own
    estimate; BC shifts the percentiles by ``z0 = Phi^-1(share of draws below the estimate)``. It
    contains the estimate whenever ``|z0| < z_(1-alpha/2)``; past that (a bootstrap so lopsided the
    interval says little) it is widened to the estimate.
    """
    from scipy.stats import norm

    draws = np.asarray(draws, dtype=float)
    share = (np.sum(draws < estimate) + 0.5 * np.sum(draws == estimate)) / len(draws)
    z0 = norm.ppf(np.clip(share, 0.5 / len(draws), 1 - 0.5 / len(draws)))
    z = norm.ppf(0.5 + level / 2)
    low, high = np.percentile(draws, [100 * norm.cdf(2 * z0 - z), 100 * norm.cdf(2 * z0 + z)])
    return float(min(low, estimate)), float(max(high, estimate))


@dataclass(frozen=True)
class GateVerdict:
    """``promote`` is True only when every condition holds; ``decided`` is False without enough data."""

    promote: bool
    decided: bool
    reasons: list[str] = field(default_factory=list)


def off_policy_gate(result: Comparison, budget_per_decision: float, simulator_passed: bool,
                    min_decisions: int = 2000, min_ess: float = 500.0) -> GateVerdict:
    """Promote a challenger only on the log's evidence and the simulator's (module docstring).

    Conditions: at least ``min_decisions`` logged decisions and an effective sample size of
    ``min_ess`` (otherwise nothing is decided), the lower bound of the paired difference above 0,
    the challenger's estimated spend per decision within ``budget_per_decision``, and the simulator
    gate passed.
    """
    if result.decisions < min_decisions or result.ess < min_ess:
        return GateVerdict(False, False, [
            f"not enough logged data to decide: {result.decisions} decisions (need {min_decisions}) and an "
            f"effective sample size of {result.ess:.0f} for the challenger (need {min_ess:.0f}); keep logging "
            "with exploration on"])
    reasons = []
    if result.low <= 0:
        reasons.append(f"the challenger is not shown better: {result.difference:+.3f} per decision, 95 % interval "
                       f"[{result.low:+.3f}, {result.high:+.3f}] ({result.estimator}) includes or is below 0")
    if result.challenger_spend > budget_per_decision:
        reasons.append(f"estimated spend {result.challenger_spend:.3f} per decision exceeds the budget "
                       f"{budget_per_decision:.3f}")
    if not simulator_passed:
        reasons.append("the simulator gate did not pass")
    if reasons:
        return GateVerdict(False, True, reasons)
    return GateVerdict(True, True, [f"better by {result.difference:+.3f} per decision, 95 % interval "
                                    f"[{result.low:+.3f}, {result.high:+.3f}] ({result.estimator}, ESS "
                                    f"{result.ess:.0f}); spend and simulator gate within bounds"])

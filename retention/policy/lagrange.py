"""Lagrange multipliers for constrained RL (after OmniSafe's ``Lagrange``).

For each constraint j with episode cost J_c,j and limit d_j, the multiplier follows dual ascent::

    lambda_j <- max(0, lambda_j + lr * (J_c,j - d_j))

It rises while the constraint is violated on average and decays towards 0 when it is
satisfied with slack. It never goes negative. The policy then maximises the penalised
advantage ``(A_r - sum_j lambda_j A_c,j) / (1 + sum_j lambda_j)``.
"""

from __future__ import annotations

import numpy as np


class Lagrange:
    """One multiplier per constraint, kept >= 0.

    Parameters
    ----------
    cost_limits : sequence of float
        Limit d_j of each constraint's expected episode cost.
    lr : float
        Dual step size.
    init : float
        Initial value of every multiplier (clipped to >= 0).
    """

    def __init__(self, cost_limits, lr: float = 0.05, init: float = 0.0):
        self.cost_limits = np.asarray(cost_limits, dtype=float)
        self.lr = float(lr)
        self.multipliers = np.full(self.cost_limits.shape, max(float(init), 0.0))

    def update(self, episode_costs) -> np.ndarray:
        """One dual-ascent step from the mean episode cost of each constraint; returns the multipliers."""
        episode_costs = np.asarray(episode_costs, dtype=float)
        self.multipliers = np.maximum(0.0, self.multipliers + self.lr * (episode_costs - self.cost_limits))
        return self.multipliers.copy()

    def penalised(self, reward_adv, cost_advs):
        """Combine advantages: ``(A_r - sum_j lambda_j A_c,j) / (1 + sum_j lambda_j)``.

        ``cost_advs`` has the constraint index last; works for numpy arrays and torch tensors.
        """
        lam = self.multipliers
        penalty = sum(float(lam[j]) * cost_advs[..., j] for j in range(len(lam)))
        return (reward_adv - penalty) / (1.0 + float(lam.sum()))

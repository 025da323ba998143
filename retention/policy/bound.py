"""An upper bound on the expected net revenue of any policy that respects the hard constraints.

For one cohort, with the simulator's true probabilities (churn risk p_i, acceptance a_ik(c) at the
c-th contact, value V_i, discount d_ik) and budget B, solve the LP

    maximise    sum_ik y_ik (p_i V_i - d_ik)
    subject to  sum_k y_ik <= 1 - prod_c (1 - max_k a_ik(c))      for each customer i
                y_ik       <= 1 - prod_c (1 - a_ik(c))           for each i, k
                sum_ik y_ik d_ik <= B
                y_ik >= 0

Why it bounds every policy: let y_ik be the probability, under any policy, that customer i
accepts offer k during the campaign.
(1) A customer gets at most ``fatigue_cap`` contacts, and each succeeds with probability at most
    the best offer's at that contact count. So the first two constraints hold.
(2) Spend can never exceed B, so expected discount spend sum y_ik d_ik is at most B.
(3) An acceptance at day t is worth V_i only if i would have churned later. That has probability
    r_t = p_i (H-t)/(H - p_i t) <= p_i given i is still a customer, and policies never see it.
(4) Contact costs are >= 0 and are left out.
The policy's expected net revenue is therefore at most the LP's objective at its y, hence at most
the optimum. The bound is loose: it lets every customer be contacted on day 0, with full
knowledge of p_i, and it relaxes the budget to hold only in expectation.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from retention.policy.cohort import CustomerPool


def upper_bound(cohort: CustomerPool, budget: float) -> float:
    """The LP bound (module docstring) for one cohort; HiGHS solves it exactly."""
    n, k = cohort.offer_cost.shape
    gain = (cohort.churn_risk * cohort.value)[:, None] - cohort.offer_cost  # (n, k)
    reach_any = 1.0 - np.prod(1.0 - cohort.accept.max(axis=1), axis=1)  # (n,)
    reach_k = 1.0 - np.prod(1.0 - cohort.accept, axis=2)  # (n, k)
    rows_any = np.zeros((n, n * k))
    for i in range(n):
        rows_any[i, i * k:(i + 1) * k] = 1.0
    a_ub = np.vstack([rows_any, cohort.offer_cost.reshape(1, -1)])
    b_ub = np.concatenate([reach_any, [budget]])
    bounds = [(0.0, float(u)) for u in reach_k.reshape(-1)]
    res = linprog(-gain.reshape(-1), A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if not res.success:
        raise RuntimeError(f"upper-bound LP failed: {res.message}")
    return float(-res.fun)

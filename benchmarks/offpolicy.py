"""Off-policy estimates against a known truth, over many replications (issue #25's targets).

    .venv/bin/python benchmarks/offpolicy.py --replications 200 --n 20000 --epsilon 0.1

Each replication draws a fresh simulated log (:func:`retention.monitoring.offpolicy_world.simulated_world`),
estimates a challenger (greedy on a noisy reward model) against the logging policy with the
doubly robust and self-normalised IPS estimators, and checks the estimate and its 95 % interval
against the truth. Prints the median and 90th percentile of the relative error of the challenger's
value, the interval coverage of the paired difference, and the mean effective sample size. Also
prints the minimum detectable uplift table (churn-rate difference, two-sided 5 %, power 80 %) and
the value exploration costs at each ε in this world.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from scipy.stats import norm

from retention.monitoring.offpolicy import compare
from retention.monitoring.offpolicy_world import simulated_world


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def replications(args: argparse.Namespace) -> None:
    results = {"dr": [], "snips": []}
    for r in range(args.replications):
        w = simulated_world(args.n, args.epsilon, seed=1000 + r)
        greedy = w.deterministic(np.argmax(np.where(w.allowed, w.predicted, -np.inf), axis=1))
        truth_value, truth_diff = w.value(greedy), w.value(greedy) - w.value(w.logging)
        for estimator in results:
            c = compare(w.rewards, w.arms, w.propensity, w.logging, greedy, w.predicted, w.customers, w.costs,
                        estimator=estimator, n_boot=args.boot, seed=r)
            results[estimator].append((abs(c.challenger - truth_value) / abs(truth_value),
                                       c.low <= truth_diff <= c.high, c.ess))
        if (r + 1) % 20 == 0:
            print(f"  {r + 1}/{args.replications} replications", flush=True)
    print(f"\n| estimator | median rel. error | p90 rel. error | 95 % coverage | mean ESS |  "
          f"(n={args.n:,}, epsilon={args.epsilon}, {args.replications} replications)")
    print("| --- | --- | --- | --- | --- |")
    for estimator, rows in results.items():
        err, cover, ess = (np.array(x, dtype=float) for x in zip(*rows, strict=True))
        print(f"| {estimator} | {np.median(err):.2%} | {np.percentile(err, 90):.2%} | {cover.mean():.1%} | "
              f"{ess.mean():,.0f} |")


def minimum_detectable_uplift(base_churn: float) -> None:
    z = norm.ppf(0.975) + norm.ppf(0.80)
    print(f"\nMinimum detectable churn-rate difference, treated vs holdout (base churn {base_churn:.1%}, "
          "two-sided 5 %, power 80 %):\n")
    print("| eligible customers | 5 % holdout | 10 % holdout | 20 % holdout |")
    print("| --- | --- | --- | --- |")
    for n in (10_000, 50_000, 100_000):
        cells = []
        for share in (0.05, 0.10, 0.20):
            se = np.sqrt(base_churn * (1 - base_churn) * (1 / (n * (1 - share)) + 1 / (n * share)))
            cells.append(f"{100 * z * se:.2f} points")
        print(f"| {n:,} | " + " | ".join(cells) + " |")


def exploration_cost(n: int) -> None:
    print("\nValue per decision that exploration costs in this simulated world (policy's arm vs the "
          "epsilon-explored logging policy):\n")
    print("| epsilon | value per decision | cost per decision | cost share |")
    print("| --- | --- | --- | --- |")
    base = simulated_world(n, 0.0, seed=7)
    exploit = base.value(base.logging)
    for eps in (0.0, 0.02, 0.05, 0.1, 0.2):
        w = simulated_world(n, eps, seed=7)
        v = w.value(w.logging)
        print(f"| {eps} | {v:.2f} | {exploit - v:.2f} | {(exploit - v) / exploit:.1%} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replications", type=int, default=200)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--epsilon", type=float, default=0.1)
    p.add_argument("--boot", type=int, default=300, help="bootstrap resamples per estimate")
    p.add_argument("--base-churn", type=float, default=0.2654, help="Telco's churn rate (1,869 of 7,043)")
    args = p.parse_args()
    print(f"CPU: {cpu_name()}")
    start = time.perf_counter()
    replications(args)
    minimum_detectable_uplift(args.base_churn)
    exploration_cost(args.n)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

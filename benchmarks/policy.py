"""Benchmark: the retention simulator and PPO-Lagrangian on the real data (cpu profile).

Usage (after `make run`, which registers the champion tabular models):

    .venv/bin/python benchmarks/policy.py [--steps 1000000] [--profile cpu]

Measures (1) vectorised simulator throughput over `--steps` env steps with random actions,
(2) PPO-Lagrangian training time for the profile's total_timesteps on Telco *train* customers,
(3) the paired held-out comparison of PPO, every baseline and the index policies against the
Lagrangian bound (``eval.campaigns`` campaigns, same draws for every policy), with the time of each part.
Prints Markdown for BENCHMARKS.md; run it on an otherwise idle machine for clean times.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import mlflow
import numpy as np

from retention.config import load_config
from retention.policy.baselines import all_baselines
from retention.policy.env import CampaignSim
from retention.policy.evaluate import BOUND, LP_BOUND, evaluate
from retention.policy.lagrangian import LagrangeIndexPolicy
from retention.policy.ppo_lagrangian import train
from retention.policy.registry import pool_for_split
from retention.policy.steps import multiplier_and_decay, report
from retention.tracking import tracking_uri


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--profile", default="cpu")
    args = ap.parse_args()
    mlflow.set_tracking_uri(tracking_uri())
    cfg = load_config(args.profile)
    processed = Path(cfg.data.processed_dir)
    train_pool, _ = pool_for_split(cfg, processed, "train")
    test_pool, _ = pool_for_split(cfg, processed, "test")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; profile {args.profile}; "
          f"pools: {len(train_pool)} train / {len(test_pool)} held-out customers\n")

    sim = CampaignSim(train_pool, cfg.env, num_envs=64, seed=0)
    rng = np.random.default_rng(0)
    start, done = time.perf_counter(), 0
    while done < args.steps:
        actions = np.column_stack([rng.random(64) < 0.3, rng.integers(0, 4, 64), rng.integers(0, 8, 64)])
        sim.step(actions)
        done += 64
    sim_s = time.perf_counter() - start

    lam, decay = multiplier_and_decay(cfg, train_pool)
    result = train(train_pool, cfg.env, cfg.ppo, progress=False, lam=lam, decay=decay)
    index = [LagrangeIndexPolicy(cfg.env, test_pool, lam=lam, decay=decay),
             LagrangeIndexPolicy(cfg.env, test_pool, lam=lam, decay=decay, resolve=True)]
    baselines = all_baselines(cfg.env, cfg.eval.risk_threshold, cfg.eval.threshold_offer)
    start = time.perf_counter()
    evaluation = evaluate([result.policy(), *baselines, *index], test_pool, cfg.env, cfg.eval.campaigns,
                          seed=cfg.eval.seed, chunk=cfg.eval.chunk,
                          subset={"index_resolve": cfg.eval.resolve_campaigns},
                          baselines=tuple(p.name for p in baselines + index), progress=False)
    eval_s = time.perf_counter() - start
    print("| measure | value |\n| --- | --- |")
    print(f"| simulator, {done:,} steps (64 campaigns, random actions) | {sim_s:.1f} s ({done / sim_s:,.0f} steps/s) |")
    print(f"| PPO-Lagrangian training, {result.env_steps:,} steps | {result.seconds:.0f} s "
          f"({result.env_steps / result.seconds:,.0f} steps/s) |")
    print(f"| paired evaluation, {cfg.eval.campaigns} campaigns ({cfg.eval.resolve_campaigns} for index_resolve) "
          f"| {eval_s:.0f} s |\n")
    s = evaluation.summary
    print(f"| policy | net revenue (95% CI) | share of Lagrangian bound (95% CI) | paired diff vs "
          f"{evaluation.reference} (95% CI) | contact rate | budget used | violations |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in s.iterrows():
        if name in (BOUND, LP_BOUND):
            ci = f"{r.net_revenue_mean:.0f} ({r.net_revenue_lo:.0f}–{r.net_revenue_hi:.0f})"
            print(f"| **{name}** | {ci} | | | | | |")
            continue
        d = evaluation.paired.loc[name]
        print(f"| {name} | {r.net_revenue_mean:.0f} ({r.net_revenue_lo:.0f}–{r.net_revenue_hi:.0f}) | "
              f"{r.share_of_bound_mean:.1%} ({r.share_of_bound_lo:.1%}–{r.share_of_bound_hi:.1%}) | "
              f"{d['diff']:+.0f} ({d['lo']:+.0f} to {d['hi']:+.0f}, n={int(d['campaigns'])}) | "
              f"{r.contact_rate_mean:.2f} | {r.budget_used_mean:.2f} | {r.violations_mean:.1f} |")
    print()
    print(report(evaluation))


if __name__ == "__main__":
    main()

"""Held-out evaluation of policies: metrics per campaign, mean and 95% CI over seeds, the bound.

Every policy is run on the same held-out cohorts with the same hidden churn draws (common random
numbers): seed s draws ``cohorts_per_seed`` cohorts of held-out customers, and the seed's value
of a metric is its mean over those campaigns. The 95% interval is the t-interval over seeds.
Policies act as they are (no guard repair), so evaluation counts their real violations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from retention.config import EnvConfig
from retention.policy.baselines import Policy
from retention.policy.bound import upper_bound
from retention.policy.cohort import CustomerPool
from retention.policy.env import CampaignSim, EpisodeStats, observation
from retention.policy.guard import NEVER_CONTACTED

METRICS = (
    "net_revenue", "net_revenue_retention", "roi", "contact_rate", "budget_used",
    "violations_budget", "violations_fatigue", "violations_cooldown", "violations",
)
BOUND = "upper_bound"


def episode_metrics(ep: EpisodeStats) -> dict[str, float]:
    """Business metrics of one campaign.

    net_revenue = revenue retained - spend (discounts + contacts); net_revenue_retention =
    (value of the cohort still a customer at the end - spend) / value of the whole cohort;
    ROI = net revenue / spend (NaN without spend); contact_rate = share of customers contacted;
    budget_used = spend / budget; violations = budget overrun (1 if any) + fatigue + cooldown counts.
    """
    overrun = 1.0 if ep.costs["budget"] > 1e-9 else 0.0
    return {
        "net_revenue": ep.net_revenue,
        "net_revenue_retention": (ep.value_total - ep.value_churned - ep.spend) / ep.value_total,
        "roi": ep.net_revenue / ep.spend if ep.spend > 0 else float("nan"),
        "contact_rate": ep.contacted / ep.customers,
        "budget_used": ep.spend / ep.budget,
        "violations_budget": overrun,
        "violations_fatigue": ep.costs["fatigue"],
        "violations_cooldown": ep.costs["cooldown"],
        "violations": overrun + ep.costs["fatigue"] + ep.costs["cooldown"],
    }


def cohorts_for_seed(pool_size: int, env: EnvConfig, seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(10_000 + seed)
    return np.stack([rng.choice(pool_size, env.cohort_size, replace=False) for _ in range(n)])


def day0_observations(sim: CampaignSim, env_id: int) -> np.ndarray:
    """What a policy would observe of every cohort customer at the start of the campaign."""
    pool, cfg = sim.pool, sim.cfg
    m = sim.members[env_id]
    n = len(m)
    return observation(pool.churn_risk[m], pool.accept[m, :, 0], np.full(n, sim.budget_total[env_id]),
                       sim.budget_total[env_id], np.full(n, NEVER_CONTACTED), np.zeros(n),
                       np.full(n, cfg.horizon_days), pool.monthly[m], sim.rules, cfg.horizon_days)


def run_policy(
    policy: Policy, pool: CustomerPool, env: EnvConfig, seed: int, cohorts: np.ndarray
) -> list[EpisodeStats]:
    """Run ``policy`` on the given cohorts (one env each) until every campaign ends."""
    sim = CampaignSim(pool, env, num_envs=len(cohorts), seed=10_000 + seed, auto_reset=False)
    sim.reset(cohorts=cohorts)
    policy.begin([day0_observations(sim, e) for e in range(len(cohorts))], sim.budget_total.copy())
    episodes: dict[int, EpisodeStats] = {}
    while len(episodes) < len(cohorts):
        contact_ok, offer_ok = sim.mask()
        actions = policy.act(sim.observe(), contact_ok, offer_ok)
        _, _, _, ended, info = sim.step(actions)
        for env_id, ep in zip(np.flatnonzero(ended), info["episodes"], strict=True):
            episodes[int(env_id)] = ep
    return [episodes[e] for e in range(len(cohorts))]


@dataclass
class Evaluation:
    per_seed: pd.DataFrame  # columns: policy, seed, metrics...
    summary: pd.DataFrame  # index policy; columns <metric>_mean, <metric>_lo, <metric>_hi


def ci95(values: np.ndarray) -> tuple[float, float, float]:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def evaluate(policies: list[Policy], pool: CustomerPool, env: EnvConfig, seeds: int, cohorts_per_seed: int,
             progress: bool = True) -> Evaluation:
    from tqdm.auto import tqdm

    if seeds < 5:
        raise ValueError(f"evaluation needs at least 5 seeds, got {seeds}")
    rows = []
    budget = env.cohort_size * env.budget_per_customer
    for seed in tqdm(range(seeds), desc="evaluate", unit="seed", disable=not progress):
        cohorts = cohorts_for_seed(len(pool), env, seed, cohorts_per_seed)
        for policy in policies:
            eps = run_policy(policy, pool, env, seed, cohorts)
            per_ep = pd.DataFrame([episode_metrics(ep) for ep in eps])
            rows.append({"policy": policy.name, "seed": seed, **per_ep.mean(numeric_only=True).to_dict()})
        bound = np.mean([upper_bound(pool.subset(c), budget) for c in cohorts])
        rows.append({"policy": BOUND, "seed": seed, "net_revenue": bound})
    per_seed = pd.DataFrame(rows)
    summary = {}
    for name, group in per_seed.groupby("policy", sort=False):
        entry = {}
        for metric in METRICS:
            if metric in group:
                entry[f"{metric}_mean"], entry[f"{metric}_lo"], entry[f"{metric}_hi"] = ci95(group[metric])
        summary[name] = entry
    return Evaluation(per_seed=per_seed, summary=pd.DataFrame(summary).T)


def choose_champion(evaluation: Evaluation) -> tuple[str, str]:
    """Best mean held-out net revenue among policies with zero violations; returns (name, reason)."""
    s = evaluation.summary.drop(index=BOUND, errors="ignore")
    clean = s[s["violations_mean"].fillna(0) == 0]
    if clean.empty:
        raise RuntimeError("no policy ran without violations; nothing can be champion")
    best = clean["net_revenue_mean"].idxmax()
    excluded = sorted(set(s.index) - set(clean.index))
    reason = f"best held-out net revenue {clean.loc[best, 'net_revenue_mean']:.1f} among policies with zero violations"
    if excluded:
        reason += f" (excluded for violations: {', '.join(excluded)})"
    return str(best), reason

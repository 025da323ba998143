"""Paired held-out evaluation of policies against the Lagrangian bound, and the gate's rule.

Pairing. Every policy runs on the same held-out cohorts with the same hidden draws: the simulator
draws, per campaign, each customer's churn day and a stream of answers (one uniform per contact,
:mod:`retention.policy.env`), from the same seed for every policy. So policies that contact in a
different order, or take a different number of steps, still meet the same churners and the same
answers. Differences between two policies are taken campaign by campaign (paired).

Scoring. A campaign is scored by its *expected* net revenue given what happened
(``reward_mode="expected"``): an accepted offer earns ``value * P(would churn | still here)``, not
``value`` or 0 by the hidden draw. The estimate is unbiased for every policy (the draw is
independent of what the policy sees) and has far less variance. The realised figure is reported
too (``net_revenue_realized``).

Intervals. Over campaigns: the mean of each metric with its 95% t-interval, each policy's share of
the campaign's Lagrangian bound (:mod:`retention.policy.lagrangian`) and, for every policy, the
paired difference to a reference (the best rule-abiding baseline) with its 95% t-interval and
p-value (``scipy.stats.ttest_rel``). Policies act as they are (no guard repair), so evaluation
counts their real violations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from retention.config import EnvConfig
from retention.policy.baselines import Policy
from retention.policy.bound import upper_bound
from retention.policy.cohort import CustomerPool
from retention.policy.env import CampaignSim, EpisodeStats, observation
from retention.policy.guard import NEVER_CONTACTED, GuardRules
from retention.policy.lagrangian import solve_multiplier

METRICS = (
    "net_revenue", "share_of_bound", "net_revenue_realized", "net_revenue_retention", "roi", "contact_rate",
    "budget_used", "violations_budget", "violations_fatigue", "violations_cooldown", "violations",
)
BOUND = "lagrangian_bound"
LP_BOUND = "lp_bound"
BOUNDS = (BOUND, LP_BOUND)


def episode_metrics(ep: EpisodeStats) -> dict[str, float]:
    """Business metrics of one campaign.

    net_revenue = (expected-scored, see module docstring) revenue retained - spend;
    net_revenue_realized = revenue retained by the hidden draws - spend; net_revenue_retention =
    (value of the cohort still a customer at the end - spend) / value of the whole cohort;
    ROI = net revenue / spend (NaN without spend); contact_rate = share of customers contacted;
    budget_used = spend / budget; violations = budget overrun (1 if any) + fatigue + cooldown counts.
    """
    overrun = 1.0 if ep.costs["budget"] > 1e-9 else 0.0
    return {
        "net_revenue": ep.net_revenue,
        "net_revenue_realized": ep.revenue_retained - ep.spend,
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
    """Run ``policy`` on the given cohorts (one env each) until every campaign ends.

    The draws depend on ``seed`` and the cohorts only, never on the policy (module docstring).
    Policies with ``uses_state`` also get the decision-time state (:meth:`CampaignSim.decision_state`).
    """
    sim = CampaignSim(pool, env, num_envs=len(cohorts), seed=10_000 + seed, auto_reset=False)
    sim.reset(cohorts=cohorts)
    policy.begin([day0_observations(sim, e) for e in range(len(cohorts))], sim.budget_total.copy())
    uses_state = getattr(policy, "uses_state", False)
    if uses_state:
        policy.begin_state(sim.members.copy(), sim.budget_total.copy())
    episodes: dict[int, EpisodeStats] = {}
    while len(episodes) < len(cohorts):
        contact_ok, offer_ok = sim.mask()
        if uses_state:
            actions = policy.act(sim.observe(), contact_ok, offer_ok, state=sim.decision_state())
        else:
            actions = policy.act(sim.observe(), contact_ok, offer_ok)
        _, _, _, ended, info = sim.step(actions)
        for env_id, ep in zip(np.flatnonzero(ended), info["episodes"], strict=True):
            episodes[int(env_id)] = ep
    return [episodes[e] for e in range(len(cohorts))]


def ci95(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t-interval of ``values`` (NaNs dropped)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if len(values) < 2 or np.all(values == values[0]):
        return mean, mean, mean
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, float(lo), float(hi)


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean of a - b over paired campaigns, its 95% t-interval and the two-sided p-value (ttest_rel)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = a - b
    mean = float(diff.mean())
    if len(diff) < 2 or np.all(diff == diff[0]):  # no spread: the difference is exact
        return {"diff": mean, "lo": mean, "hi": mean, "p_value": 1.0 if mean == 0 else 0.0, "campaigns": len(diff)}
    test = stats.ttest_rel(a, b)
    ci = test.confidence_interval(0.95)
    return {"diff": mean, "lo": float(ci.low), "hi": float(ci.high), "p_value": float(test.pvalue),
            "campaigns": len(diff)}


@dataclass
class Evaluation:
    """Result of :func:`evaluate`.

    Attributes
    ----------
    per_campaign : one row per (policy, campaign) with every metric; the bounds as policies.
    summary : index policy; columns ``<metric>_mean``, ``<metric>_lo``, ``<metric>_hi``.
    paired : index policy; paired difference in net revenue to ``reference`` (diff, lo, hi, p_value).
    reference : the best rule-abiding baseline, the reference of ``paired``.
    multipliers : lambda* of each campaign.
    """

    per_campaign: pd.DataFrame
    summary: pd.DataFrame
    paired: pd.DataFrame
    reference: str
    multipliers: np.ndarray


def comparison_table(evaluation: Evaluation) -> pd.DataFrame:
    """One row per policy (the bounds included): the figures a reader compares, each with its interval.

    Columns: ``policy``, ``net_revenue`` with ``_lo`` / ``_hi``, ``share_of_bound`` with ``_lo`` /
    ``_hi``, ``violations``, ``campaigns``, and the paired difference in net revenue to the reference
    baseline (``paired_diff``, ``paired_lo``, ``paired_hi``, ``paired_p``; empty for the bounds).
    """
    s, p = evaluation.summary, evaluation.paired
    out = pd.DataFrame({"policy": s.index})
    for metric in ("net_revenue", "share_of_bound"):
        for suffix in ("mean", "lo", "hi"):
            column = f"{metric}_{suffix}"
            out[metric if suffix == "mean" else column] = s[column].to_numpy() if column in s else np.nan
    out["violations"] = s["violations_mean"].to_numpy() if "violations_mean" in s else np.nan
    out["campaigns"] = s["campaigns"].to_numpy() if "campaigns" in s else np.nan
    for ours, theirs in (("paired_diff", "diff"), ("paired_lo", "lo"), ("paired_hi", "hi"), ("paired_p", "p_value")):
        out[ours] = [float(p.loc[name, theirs]) if name in p.index else np.nan for name in s.index]
    return out.sort_values("net_revenue", ascending=False, ignore_index=True)


def net_matrix(per_campaign: pd.DataFrame, metric: str = "net_revenue") -> pd.DataFrame:
    """Campaign x policy table of one metric."""
    return per_campaign.pivot(index="campaign", columns="policy", values=metric)


def paired_table(per_campaign: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Paired difference of every policy's net revenue to ``reference`` over the campaigns both ran."""
    table = net_matrix(per_campaign)
    rows = {}
    for name in table.columns:
        if name in BOUNDS:
            continue
        both = table[[name, reference]].dropna()
        rows[name] = paired_difference(both[name].to_numpy(), both[reference].to_numpy())
    return pd.DataFrame(rows).T


def evaluate(policies: list[Policy], pool: CustomerPool, env: EnvConfig, campaigns: int, seed: int = 0,
             chunk: int = 100, subset: dict[str, int] | None = None, baselines: tuple[str, ...] = (),
             progress: bool = True) -> Evaluation:
    """Run every policy on ``campaigns`` held-out campaigns (paired; module docstring).

    Parameters
    ----------
    policies : the policies to compare.
    pool : held-out customers.
    env : simulator settings (scoring always uses ``reward_mode="expected"``).
    campaigns : number of campaigns (cohorts).
    seed : seed of the cohorts and of the draws.
    chunk : campaigns simulated together (memory).
    subset : policy name -> number of campaigns for slow policies (they run on the first ones).
    baselines : names eligible as the reference of the paired differences (default: every policy).
    """
    from tqdm.auto import tqdm

    if campaigns < 2:
        raise ValueError(f"evaluation needs at least 2 campaigns for an interval, got {campaigns}")
    scored = dataclasses.replace(env, reward_mode="expected")
    rules = GuardRules(env.fatigue_cap, env.cooldown_days, env.contact_cost)
    budget = env.cohort_size * env.budget_per_customer
    cohorts = cohorts_for_seed(len(pool), env, seed, campaigns)
    subset = subset or {}
    rows, lams = [], []
    starts = range(0, campaigns, chunk)
    for lo in tqdm(starts, desc="evaluate", unit="chunk", disable=not progress):
        part = cohorts[lo:lo + chunk]
        ids = np.arange(lo, lo + len(part))
        bounds = []
        for j, c in enumerate(part):
            lam, lag = solve_multiplier(pool.subset(c), rules, env.horizon_days, budget)
            lams.append(lam)
            bounds.append(lag)
            rows.append({"policy": BOUND, "campaign": ids[j], "net_revenue": lag})
            rows.append({"policy": LP_BOUND, "campaign": ids[j], "net_revenue": upper_bound(pool.subset(c), budget)})
        for policy in policies:
            limit = subset.get(policy.name, campaigns)
            keep = ids < limit
            if not keep.any():
                continue
            eps = run_policy(policy, pool, scored, seed * 1_000_003 + lo, part[keep])
            for j, ep in zip(np.flatnonzero(keep), eps, strict=True):
                m = episode_metrics(ep)
                rows.append({"policy": policy.name, "campaign": ids[j], **m,
                             "share_of_bound": m["net_revenue"] / bounds[j]})
    per_campaign = pd.DataFrame(rows)
    summary = {}
    for name, group in per_campaign.groupby("policy", sort=False):
        entry = {}
        for metric in METRICS:
            if metric in group:
                entry[f"{metric}_mean"], entry[f"{metric}_lo"], entry[f"{metric}_hi"] = ci95(group[metric])
        entry["campaigns"] = len(group)
        summary[name] = entry
    summary = pd.DataFrame(summary).T
    eligible = [p.name for p in policies if (not baselines or p.name in baselines)
                and summary.loc[p.name, "campaigns"] == campaigns]  # the reference ran every campaign
    reference = best_clean(summary, eligible)
    return Evaluation(per_campaign=per_campaign, summary=summary, paired=paired_table(per_campaign, reference),
                      reference=reference, multipliers=np.asarray(lams))


def best_clean(summary: pd.DataFrame, names: list[str]) -> str:
    """The policy among ``names`` with the best mean net revenue and zero violations."""
    s = summary.loc[[n for n in names if n in summary.index]]
    clean = s[s["violations_mean"].fillna(0) == 0]
    if clean.empty:
        raise RuntimeError("no policy ran without violations; nothing can be champion")
    return str(clean["net_revenue_mean"].astype(float).idxmax())


def choose_champion(evaluation: Evaluation, incumbent: str | None = None) -> tuple[str, str]:
    """The gate: keep the incumbent unless a challenger is *significantly* better, paired.

    The incumbent is ``incumbent`` (e.g. the registered champion's kind) if it was evaluated and ran
    without violations, else the reference (the best rule-abiding baseline). Every other policy
    with zero violations is a challenger. A challenger is crowned only when its paired difference in
    net revenue to the incumbent has a 95% interval entirely above 0; among several, the one with the
    largest mean difference. Returns ``(name, reason)``.
    """
    s = evaluation.summary.drop(index=list(BOUNDS), errors="ignore")
    clean = s[s["violations_mean"].fillna(0) == 0]
    if clean.empty:
        raise RuntimeError("no policy ran without violations; nothing can be champion")
    excluded = sorted(set(s.index) - set(clean.index))
    if incumbent not in clean.index:
        incumbent = evaluation.reference if evaluation.reference in clean.index else best_clean(s, list(clean.index))
    table = net_matrix(evaluation.per_campaign)
    best, best_diff, notes = incumbent, None, []
    for name in clean.index:
        if name == incumbent:
            continue
        both = table[[name, incumbent]].dropna()
        d = paired_difference(both[name].to_numpy(), both[incumbent].to_numpy())
        notes.append(f"{name} - {incumbent} = {d['diff']:+.1f} (95% CI {d['lo']:+.1f} to {d['hi']:+.1f}, "
                     f"{d['campaigns']} campaigns)")
        if d["lo"] > 0 and (best_diff is None or d["diff"] > best_diff):
            best, best_diff = name, d["diff"]
    if best == incumbent:
        reason = f"incumbent {incumbent} kept: no challenger is significantly better, paired"
    else:
        reason = f"{best} crowned over incumbent {incumbent}: paired difference significantly positive"
    reason += "; " + "; ".join(notes) if notes else ""
    if excluded:
        reason += f" (excluded for violations: {', '.join(excluded)})"
    return str(best), reason

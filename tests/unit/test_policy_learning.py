"""Lagrange multipliers, baselines, the bound, the gate, and PPO on a small fixed-seed cohort."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from retention.config import load_config
from retention.policy.baselines import (
    BudgetedKnapsack,
    GreedyExpectedValue,
    NeverContact,
    RiskThreshold,
    TopOfferEveryone,
)
from retention.policy.bound import upper_bound
from retention.policy.cohort import synthetic_pool
from retention.policy.evaluate import Evaluation, choose_champion, cohorts_for_seed, evaluate, run_policy
from retention.policy.lagrange import Lagrange
from retention.policy.model import AgentPolicy, decide
from retention.policy.ppo_lagrangian import train

CFG = load_config("smoke")


# ----------------------------------------------------------------------------- Lagrange
def test_multiplier_rises_when_cost_exceeds_limit_and_never_goes_negative():
    lag = Lagrange([1.0, 0.5], lr=0.5)
    lag.update([3.0, 0.0])  # first over its limit; second under it: would go negative, clipped at 0
    assert lag.multipliers[0] == pytest.approx(1.0) and lag.multipliers[1] == 0.0
    lag.update([3.0, 2.5])
    assert lag.multipliers[0] == pytest.approx(2.0) and lag.multipliers[1] == pytest.approx(1.0)
    lag.update([1.0, 0.5])  # exactly at the limit: unchanged
    assert lag.multipliers.tolist() == pytest.approx([2.0, 1.0])
    for _ in range(20):  # slack: decays to 0 and stays there
        lag.update([0.0, 0.0])
        assert np.all(lag.multipliers >= 0.0)
    assert np.all(lag.multipliers == 0.0)


def test_negative_init_is_clipped_and_penalised_formula():
    lag = Lagrange([0.0, 0.0], init=-3.0)
    assert np.all(lag.multipliers == 0.0)
    lag.multipliers = np.array([1.0, 3.0])
    adv_r, adv_c = np.array([10.0]), np.array([[2.0, 1.0]])
    assert lag.penalised(adv_r, adv_c)[0] == pytest.approx((10 - 2 - 3) / 5)


# ----------------------------------------------------------------------------- the bound
def test_bound_on_a_hand_solvable_cohort():
    env = dataclasses.replace(CFG.env, fatigue_cap=1)
    pool = synthetic_pool(3, env, seed=0)
    pool = dataclasses.replace(pool, churn_risk=np.array([0.5, 0.2, 0.0]), accept=np.ones((3, 4, 1)))
    # budget 0: only the free offer (level 0); each customer accepts surely; gain = p * V
    assert upper_bound(pool, 0.0) == pytest.approx(float((pool.churn_risk * pool.value).sum()))


def test_bound_is_above_every_rule_abiding_policy():
    env = CFG.env
    pool = synthetic_pool(300, env, seed=2)
    budget = env.cohort_size * env.budget_per_customer
    cohorts = cohorts_for_seed(len(pool), env, 0, 40)
    bound = np.mean([upper_bound(pool.subset(c), budget) for c in cohorts])
    for policy in (GreedyExpectedValue(env), BudgetedKnapsack(env), RiskThreshold(0.3, 3)):
        eps = run_policy(policy, pool, env, 0, cohorts)
        assert np.mean([e.net_revenue for e in eps]) <= bound


# ----------------------------------------------------------------------------- baselines
def test_baselines_behave_as_described():
    env = CFG.env
    pool = synthetic_pool(300, env, seed=1)
    cohorts = cohorts_for_seed(len(pool), env, 0, 8)
    never = run_policy(NeverContact(), pool, env, 0, cohorts)
    assert all(e.contacts == 0 and e.net_revenue == 0 for e in never)
    naive = run_policy(TopOfferEveryone(), pool, env, 0, cohorts)
    assert sum(e.costs["fatigue"] + e.costs["cooldown"] + e.costs["budget"] for e in naive) > 0
    for policy in (RiskThreshold(0.3, 2), GreedyExpectedValue(env), BudgetedKnapsack(env)):
        for e in run_policy(policy, pool, env, 0, cohorts):
            assert e.costs == {"budget": 0.0, "fatigue": 0.0, "cooldown": 0.0}, policy.name
            assert e.spend <= e.budget + 1e-9


def test_gate_excludes_policies_with_violations():
    summary = pd.DataFrame({"net_revenue_mean": [100.0, 50.0, 70.0, 500.0], "violations_mean": [2.0, 0.0, 0.0, None]},
                           index=["naive", "a", "b", "upper_bound"])
    name, reason = choose_champion(Evaluation(per_seed=pd.DataFrame(), summary=summary))
    assert name == "b" and "naive" in reason


# ----------------------------------------------------------------------------- PPO
@pytest.fixture(scope="module")
def trained_agent():
    ppo = dataclasses.replace(CFG.ppo, total_timesteps=40_960, num_envs=16, num_steps=128, seed=3)
    pool = synthetic_pool(400, CFG.env, seed=7)
    return train(pool, CFG.env, ppo, progress=False)


def test_ppo_logs_the_diagnostics(trained_agent):
    h = trained_agent.history[-1]
    for key in ("approx_kl", "clipfrac", "explained_variance", "lambda_budget", "lambda_fatigue",
                "lambda_cooldown", "episode_net_revenue", "episode_cost_budget", "cost_limit_budget"):
        assert key in h
    assert all(v >= 0 for k, v in h.items() if k.startswith("lambda_"))


def test_ppo_beats_never_contact_on_a_fixed_seed_cohort(trained_agent):
    pool = synthetic_pool(300, CFG.env, seed=8)
    ev = evaluate([AgentPolicy(trained_agent.agent), NeverContact()], pool, CFG.env, seeds=5, cohorts_per_seed=4,
                  progress=False)
    s = ev.summary
    assert s.loc["ppo", "net_revenue_lo"] > s.loc["never_contact", "net_revenue_hi"]
    assert s.loc["ppo", "violations_mean"] == 0


def test_lagrangian_learns_an_unmasked_constraint():
    """With the budget left to the multiplier (not masked), overspending makes lambda_budget rise."""
    env = dataclasses.replace(CFG.env, budget_per_customer=0.2)
    ppo = dataclasses.replace(CFG.ppo, total_timesteps=20_480, num_envs=16, num_steps=128, masked="fatigue,cooldown",
                              lambda_lr=0.01)
    result = train(synthetic_pool(200, env, seed=1), env, ppo, progress=False)
    lam = [h["lambda_budget"] for h in result.history]
    costs = [h.get("episode_cost_budget", 0.0) for h in result.history]
    assert max(costs) > 0 and max(lam) > 0
    assert all(h["lambda_fatigue"] == 0 and h["lambda_cooldown"] == 0 for h in result.history)


def test_policy_model_decide_checks_columns(trained_agent):
    from retention.errors import InputError
    from retention.policy.env import OBS_COLUMNS

    frame = pd.DataFrame(np.full((3, len(OBS_COLUMNS)), 0.5, dtype=np.float32), columns=list(OBS_COLUMNS))
    out = decide(AgentPolicy(trained_agent.agent), frame.assign(contact_ok=[True, False, True]))
    assert list(out.columns) == ["contact", "offer_level", "delay_days"] and out.loc[1, "contact"] == 0
    with pytest.raises(InputError, match="churn_risk"):
        decide(AgentPolicy(trained_agent.agent), frame.drop(columns=["churn_risk"]))

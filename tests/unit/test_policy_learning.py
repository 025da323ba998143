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
from retention.policy.evaluate import (
    Evaluation,
    choose_champion,
    cohorts_for_seed,
    evaluate,
    paired_difference,
    run_policy,
)
from retention.policy.lagrange import Lagrange
from retention.policy.model import decide
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


def _evaluation(nets: dict[str, np.ndarray], violations: dict[str, float] | None = None) -> Evaluation:
    """An Evaluation from per-campaign net revenues (the gate only reads these and the violations)."""
    violations = violations or {}
    rows = [{"policy": name, "campaign": i, "net_revenue": float(v), "violations": violations.get(name, 0.0)}
            for name, values in nets.items() for i, v in enumerate(values)]
    per_campaign = pd.DataFrame(rows)
    summary = per_campaign.groupby("policy").agg(net_revenue_mean=("net_revenue", "mean"),
                                                 violations_mean=("violations", "mean"))
    reference = str(summary[summary["violations_mean"] == 0]["net_revenue_mean"].idxmax())
    return Evaluation(per_campaign=per_campaign, summary=summary, paired=pd.DataFrame(), reference=reference,
                      multipliers=np.zeros(0))


def test_gate_excludes_policies_with_violations():
    rng = np.random.default_rng(0)
    base = rng.normal(100, 10, 50)
    ev = _evaluation({"naive": base + 500, "a": base, "b": base + 20 + rng.normal(0, 1, 50)}, violations={"naive": 2.0})
    name, reason = choose_champion(ev, incumbent="a")
    assert name == "b" and "naive" in reason and "crowned" in reason


def test_gate_refuses_a_challenger_that_is_not_significantly_better():
    """A higher mean is not enough: the paired interval must exclude 0."""
    rng = np.random.default_rng(1)
    base = rng.normal(1000, 200, 40)
    noise = rng.normal(0, 100, 40)
    challenger = base + 5 + noise - noise.mean()  # mean +5, paired sd 100: CI about +/-32
    ev = _evaluation({"incumbent": base, "challenger": challenger})
    assert ev.summary.loc["challenger", "net_revenue_mean"] > ev.summary.loc["incumbent", "net_revenue_mean"]
    name, reason = choose_champion(ev, incumbent="incumbent")
    assert name == "incumbent" and "no challenger is significantly better" in reason
    # the same mean gap with no noise in the pairing is significant
    ev = _evaluation({"incumbent": base, "challenger": base + 5 + rng.normal(0, 1, 40)})
    assert choose_champion(ev, incumbent="incumbent")[0] == "challenger"


def test_identical_policies_have_a_paired_difference_of_exactly_zero():
    """Same cohorts, same churners, same answers: two copies of a policy differ by exactly 0 per campaign,
    even though another policy run between them consumed different numbers of steps."""
    env = CFG.env
    pool = synthetic_pool(200, env, seed=4)
    twin = GreedyExpectedValue(env)
    twin.name = "greedy_twin"
    ev = evaluate([GreedyExpectedValue(env), RiskThreshold(0.3, 3), twin], pool, env, campaigns=12, chunk=5,
                  progress=False)
    nets = ev.per_campaign.pivot(index="campaign", columns="policy", values="net_revenue")
    assert (nets["greedy_ev"] - nets["greedy_twin"]).abs().max() == 0.0
    d = paired_difference(nets["greedy_twin"].to_numpy(), nets["greedy_ev"].to_numpy())
    assert d["diff"] == d["lo"] == d["hi"] == 0.0 and d["campaigns"] == 12
    assert ev.paired.loc[ev.reference, "diff"] == 0.0
    assert (nets["greedy_ev"] != nets["risk_threshold"]).any()


def test_acceptance_draws_belong_to_the_customer_not_the_step():
    """A customer's j-th contact is answered by the same draw whichever policy contacts them and when."""
    from retention.policy.env import CampaignSim

    pool = dataclasses.replace(synthetic_pool(30, CFG.env, seed=2), accept=np.full((30, 4, CFG.env.fatigue_cap), 0.5))
    answers = []
    for delay in (0, 5):
        sim = CampaignSim(pool, CFG.env, num_envs=1, seed=9, auto_reset=False)
        got = {}
        while not sim.done[0]:
            i = int(sim.cur[0])
            contact = int(sim.contacts[0, i] == 0)  # contact everyone once, at their first review
            _, _, _, _, info = sim.step(np.array([[contact, 0, delay]]))
            if contact:
                got[i] = bool(info["accepted"][0])
        answers.append(got)
    assert answers[0] == answers[1]


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
    ev = evaluate([trained_agent.policy(), NeverContact()], pool, CFG.env, campaigns=20, progress=False)
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
    out = decide(trained_agent.policy(), frame.assign(contact_ok=[True, False, True]))
    assert list(out.columns) == ["contact", "offer_level", "delay_days"] and out.loc[1, "contact"] == 0
    with pytest.raises(InputError, match="churn_risk"):
        decide(trained_agent.policy(), frame.drop(columns=["churn_risk"]))

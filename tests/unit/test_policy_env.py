"""The campaign simulator's contract and the guard."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from retention.config import load_config
from retention.policy.cohort import CustomerPool, offer_costs, synthetic_pool
from retention.policy.env import OBS_COLUMNS, CampaignSim, RetentionEnv, remaining_risk
from retention.policy.guard import GuardRules, action_mask, guard

ENV = load_config("smoke").env


def _pool(n=50, risk=None, accept=None, seed=0) -> CustomerPool:
    pool = synthetic_pool(n, ENV, seed=seed)
    if risk is not None:
        pool = dataclasses.replace(pool, churn_risk=np.full(n, risk))
    if accept is not None:
        pool = dataclasses.replace(pool, accept=np.full_like(pool.accept, accept))
    return pool


def test_passes_gymnasium_check_env():
    check_env(RetentionEnv(_pool(), ENV), skip_render_check=True)


def test_action_applies_to_the_customer_just_observed():
    env = RetentionEnv(_pool(), ENV)
    obs, info = env.reset(seed=3)
    for _ in range(60):
        observed = info["customer_id"]
        sim = env.sim
        row = int(np.flatnonzero(sim.pool.customer_ids[sim.members[0]] == observed)[0])
        before = sim.contacts[0, row]
        allowed = info["action_mask"]["contact_ok"]
        obs, reward, done, _, info = env.step(np.array([1 if allowed else 0, 0, 2]))
        assert info["acted_on"] == observed
        assert sim.contacts[0, row] == before + (1 if allowed else 0)
        if done:
            break


def test_a_prevented_churn_raises_revenue():
    """Everyone would churn and everyone accepts: contacting must beat not contacting by the value."""
    pool = _pool(risk=1.0, accept=1.0)
    rewards = {}
    for contact in (0, 1):
        sim = CampaignSim(pool, ENV, num_envs=1, seed=0, auto_reset=False)
        state = sim.current()
        _, reward, _, _, info = sim.step(np.array([[contact, 0, 0]]))
        rewards[contact] = float(reward[0])
        if contact:
            assert info["accepted"][0]
            assert rewards[1] == pytest.approx(state["value"][0] - ENV.contact_cost)
    assert rewards[1] > rewards[0] == 0.0


def test_constraint_costs_are_reported_separately_not_in_reward():
    pool = _pool(risk=0.0, accept=0.0)  # nobody churns or accepts: reward = -contact cost only
    sim = CampaignSim(pool, dataclasses.replace(ENV, cohort_size=1, fatigue_cap=1), num_envs=1, seed=0,
                      auto_reset=False)
    _, r1, c1, _, _ = sim.step(np.array([[1, 0, 0]]))  # day 0: fine
    _, r2, c2, _, _ = sim.step(np.array([[1, 0, 0]]))  # day 1: over fatigue cap and inside cooldown
    assert c1.tolist() == [[0.0, 0.0, 0.0]]
    assert c2[0, 1] == 1.0 and c2[0, 2] == 1.0
    assert r1[0] == r2[0] == pytest.approx(-ENV.contact_cost)


def test_budget_overrun_is_measured():
    env_cfg = dataclasses.replace(ENV, cohort_size=2, budget_per_customer=1.0)
    pool = _pool(risk=0.0, accept=1.0)
    sim = CampaignSim(pool, env_cfg, num_envs=1, seed=0, auto_reset=False)
    cost = sim.current()["offer_cost"][0, 3]
    _, _, c, _, _ = sim.step(np.array([[1, 3, 0]]))
    assert c[0, 0] == pytest.approx(cost + ENV.contact_cost - 2.0)


def test_observation_columns_and_bounds():
    sim = CampaignSim(_pool(), ENV, num_envs=4, seed=1)
    obs = sim.observe()
    assert obs.shape == (4, len(OBS_COLUMNS)) and obs.dtype == np.float32
    assert np.all(obs >= 0) and np.all(obs[:, :10] <= 1.0)


def test_remaining_risk():
    assert remaining_risk(np.array([0.4]), np.array([0]), 10)[0] == pytest.approx(0.4)
    assert remaining_risk(np.array([1.0]), np.array([5]), 10)[0] == pytest.approx(1.0)
    assert remaining_risk(np.array([0.5]), np.array([10]), 10)[0] == pytest.approx(0.0)


def test_expected_reward_mode_has_the_same_mean():
    pool = _pool(200, seed=5)
    means = {}
    for mode in ("realized", "expected"):
        sim = CampaignSim(pool, dataclasses.replace(ENV, reward_mode=mode), num_envs=64, seed=11)
        rng = np.random.default_rng(0)
        total, episodes = 0.0, 0
        while episodes < 400:
            actions = np.column_stack([rng.random(64) < 0.5, rng.integers(0, 4, 64), rng.integers(0, 8, 64)])
            _, r, _, _, info = sim.step(actions)
            total += r.sum()
            episodes += len(info["episodes"])
        means[mode] = total / episodes
    assert means["expected"] == pytest.approx(means["realized"], rel=0.1)


def test_campaign_ends_and_churners_leave():
    sim = CampaignSim(_pool(risk=1.0, accept=0.0), ENV, num_envs=1, seed=0, auto_reset=False)
    done, steps = False, 0
    while not done:
        _, _, _, ended, info = sim.step(np.array([[0, 0, 7]]))
        done, steps = bool(ended[0]), steps + 1
    ep = info["episodes"][0]
    assert ep.churned == ENV.cohort_size and ep.saved == 0 and ep.net_revenue == 0.0


# ----------------------------------------------------------------------------- guard
RULES = GuardRules(fatigue_cap=3, cooldown_days=7, contact_cost=0.1)


def test_guard_never_lets_an_action_break_a_hard_constraint():
    rng = np.random.default_rng(0)
    n = 20_000
    budget = rng.uniform(0, 40, n)
    fatigue = rng.integers(0, 5, n)
    dsc = rng.integers(0, 15, n)
    offer_cost = offer_costs(rng.uniform(20, 110, n), 3.0)
    actions = np.column_stack([rng.integers(0, 2, n), rng.integers(0, 4, n), rng.integers(0, 8, n)])
    safe, overridden = guard(actions, budget, fatigue, dsc, offer_cost, RULES)
    contact = safe[:, 0] == 1
    assert np.all(fatigue[contact] < 3)
    assert np.all(dsc[contact] >= 7)
    assert np.all(offer_cost[contact, safe[contact, 1]] + 0.1 <= budget[contact] + 1e-9)
    assert np.array_equal(safe[:, 2], actions[:, 2])  # delay untouched
    assert np.array_equal(overridden, (safe != actions).any(axis=1))
    # allowed actions pass unchanged
    ok = (actions[:, 0] == 0) | ((fatigue < 3) & (dsc >= 7)
                                 & (offer_cost[np.arange(n), actions[:, 1]] + 0.1 <= budget))
    assert not overridden[ok].any()


def test_guard_downgrades_to_the_largest_affordable_offer():
    offer_cost = np.array([[0.0, 5.0, 10.0, 15.0]])
    safe, over = guard(np.array([[1, 3, 2]]), np.array([10.5]), np.array([0]), np.array([99]), offer_cost, RULES)
    assert safe.tolist() == [[1, 2, 2]] and over[0]
    safe, _ = guard(np.array([[1, 3, 2]]), np.array([0.05]), np.array([0]), np.array([99]), offer_cost, RULES)
    assert safe[0, 0] == 0  # cannot even pay the message


def test_action_mask_only_enforces_what_is_asked():
    args = (np.array([100.0]), np.array([5]), np.array([0]), np.zeros((1, 4)), RULES)
    assert not action_mask(*args)[0][0]
    assert action_mask(*args, enforce=frozenset({"budget"}))[0][0]

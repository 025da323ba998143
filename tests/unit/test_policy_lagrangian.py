"""The Lagrangian bound against brute force, and the index policy that it induces."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest

from retention.config import load_config
from retention.policy.cohort import synthetic_pool
from retention.policy.env import remaining_risk
from retention.policy.guard import GuardRules
from retention.policy.lagrangian import customer_dp, lagrangian_bound

# the acceptance models here are stand-ins: any (month, weekday, share) mix serves as their calendar
TEST_CALENDAR = (("may", "mon", 0.6), ("dec", "fri", 0.4))

TINY = dataclasses.replace(load_config("smoke").env, cohort_size=3, horizon_days=5, fatigue_cap=2, cooldown_days=2)


def _tiny_cohort(seed: int = 4):
    pool = synthetic_pool(3, TINY, seed=seed)
    rng = np.random.default_rng(seed)
    # strong, varied acceptance so that contacting matters and the budget binds
    accept = np.clip(rng.uniform(0.2, 0.7, (3, 1, 1)) * np.array([0.5, 0.7, 0.9, 1.0])[None, :, None]
                     * np.array([1.0, 0.6])[None, None, :], 0, 1)
    return dataclasses.replace(pool, churn_risk=np.array([0.9, 0.6, 0.35]), accept=accept)


def brute_force(cohort, env, budget: float) -> float:
    """Optimal expected net revenue over *every* rule-abiding policy of the joint campaign.

    Exact backward induction over the joint state: day, position in the day's review order, each
    customer's (still to be decided?, contacts, days since contact) and the budget left. Each day,
    customers are decided one after another (a later decision sees earlier answers); between days each
    undecided customer stays with probability q_t. Budget: a contact needs contact cost + discount left.
    """
    n, h = len(cohort.churn_risk), env.horizon_days
    f_cap, cool, kappa = env.fatigue_cap, env.cooldown_days, env.contact_cost

    @cache
    def v(t: int, j: int, custs: tuple, money: float) -> float:
        if t >= h:
            return 0.0
        if j == n:  # end of day: churns, then the next day
            q = [(1 - cohort.churn_risk[i] * (t + 1) / h) / (1 - cohort.churn_risk[i] * t / h) for i in range(n)]
            total = 0.0
            for mask in range(2 ** n):
                prob, nxt = 1.0, []
                for i, (active, c, s) in enumerate(custs):
                    stays = bool(mask >> i & 1)
                    if not active:
                        if stays:
                            prob = 0.0  # a decided customer has a single outcome: count it once
                        nxt.append((False, c, s))
                        continue
                    prob *= q[i] if stays else 1 - q[i]
                    nxt.append((stays, c, min(s + 1, cool)))
                if prob > 0:
                    total += prob * v(t + 1, 0, tuple(nxt), money)
            return total
        active, c, s = custs[j]
        best = v(t, j + 1, custs, money)  # wait
        if active and c < f_cap and s >= cool:
            r = float(remaining_risk(cohort.churn_risk[j], t, h))
            for k in range(4):
                spend = kappa + cohort.offer_cost[j, k]
                if money + 1e-9 < spend:
                    continue
                a = cohort.accept[j, k, c]
                yes = list(custs)
                yes[j] = (False, c + 1, 0)
                no = list(custs)
                no[j] = (True, c + 1, 0)
                val = (a * (r * cohort.value[j] - spend + v(t, j + 1, tuple(yes), round(money - spend, 9)))
                       + (1 - a) * (-kappa + v(t, j + 1, tuple(no), round(money - kappa, 9))))
                best = max(best, val)
        return best

    return v(0, 0, tuple((True, 0, cool) for _ in range(n)), round(budget, 9))


@pytest.mark.parametrize("budget", [4.0, 15.0, 40.0])
def test_bound_is_above_the_brute_force_optimum_of_a_3_customer_cohort(budget):
    cohort = _tiny_cohort()
    optimum = brute_force(cohort, TINY, budget)
    bound, lam = lagrangian_bound(cohort, TINY, budget)
    assert optimum > 0
    assert bound >= optimum - 1e-6
    from retention.policy.bound import upper_bound

    assert bound <= upper_bound(cohort, budget) + 1e-6  # and tighter than the LP


def test_bound_equals_brute_force_when_the_budget_never_binds():
    """With money for every contact, customers decouple: the relaxation is exact (lambda* = 0)."""
    cohort = _tiny_cohort()
    budget = 1e4
    bound, lam = lagrangian_bound(cohort, TINY, budget)
    assert lam == 0.0
    assert bound == pytest.approx(brute_force(cohort, TINY, budget), rel=1e-9)


def test_customer_dp_matches_a_hand_solved_case():
    """One customer, one day, sure acceptance: W = max(0, max_k (p V - (1+lam)(kappa + d_k)))."""
    env = dataclasses.replace(TINY, horizon_days=1, fatigue_cap=1)
    rules = GuardRules(1, 2, 0.1)
    pool = synthetic_pool(1, env, seed=0)
    dp = customer_dp(np.array([0.5]), np.ones((1, 4, 1)), pool.value, pool.offer_cost, 2.0, rules, 1)
    expected = max(0.0, float((0.5 * pool.value[0] - 3.0 * (0.1 + pool.offer_cost[0])).max()))
    assert dp.value[0] == pytest.approx(expected)


# ----------------------------------------------------------------------------- the index policy
ENV = load_config("smoke").env


def _index_runs(resolve: bool, seed: int = 3):
    from retention.policy.evaluate import cohorts_for_seed, run_policy
    from retention.policy.lagrangian import LagrangeIndexPolicy

    env = dataclasses.replace(ENV, budget_per_customer=1.5)  # tight: the guard has work to do
    pool = synthetic_pool(200, env, seed=seed)
    cohorts = cohorts_for_seed(len(pool), env, seed, 6)
    policy = LagrangeIndexPolicy(env, pool, resolve=resolve)
    return policy, run_policy(policy, pool, env, seed, cohorts)


@pytest.mark.parametrize("resolve", [False, True])
def test_index_policy_never_breaks_a_rule(resolve):
    policy, episodes = _index_runs(resolve)
    assert all(e.costs == {"budget": 0.0, "fatigue": 0.0, "cooldown": 0.0} for e in episodes)
    assert all(e.spend <= e.budget + 1e-9 for e in episodes)
    assert sum(e.contacts for e in episodes) > 0
    assert resolve or (policy.lams_ > 0).all()  # the budget binds: lambda* > 0


def test_index_policy_never_sees_the_hidden_draws():
    """The decision-time state handed to policies carries no would-churn flag nor churn day."""
    from retention.policy.env import CampaignSim

    sim = CampaignSim(synthetic_pool(50, ENV), ENV, num_envs=2, seed=0)
    state = sim.decision_state()
    assert not {"would_churn", "churn_day", "accept_u"} & set(state)
    for arr in state.values():
        assert not np.shares_memory(arr, sim.would_churn) and not np.shares_memory(arr, sim.churn_day)


def test_index_policy_in_serving_matches_the_simulation_on_decision_time_inputs():
    """Serving has one observation row per customer (days left, ledger fatigue and days since contact).
    With the cohort's lambda and an exact acceptance decay, it takes the same decision as in simulation."""
    from retention.policy.env import CampaignSim
    from retention.policy.lagrangian import LagrangeIndexPolicy, acceptance_decay

    pool = synthetic_pool(200, ENV, seed=5)  # acceptance decays by the same factor for everyone
    sim = CampaignSim(pool, ENV, num_envs=4, seed=2, auto_reset=False)
    sim_policy = LagrangeIndexPolicy(ENV, pool)
    sim_policy.begin_state(sim.members.copy(), sim.budget_total.copy())
    checked = 0
    for _ in range(150):
        if sim.done.all():
            break
        contact_ok, offer_ok = sim.mask()
        obs, state = sim.observe(), sim.decision_state()
        in_sim = sim_policy.act(obs, contact_ok, offer_ok, state=state)
        for e in range(sim.num_envs):
            if sim.done[e]:
                continue
            serving = LagrangeIndexPolicy(ENV, lam=float(sim_policy.lams_[e]), decay=acceptance_decay(pool))
            served = serving.act(obs[e:e + 1], contact_ok[e:e + 1], offer_ok[e:e + 1])
            assert served[0, 0] == in_sim[e, 0]
            if served[0, 0]:
                assert served[0, 1] == in_sim[e, 1]
            checked += 1
        sim.step(in_sim)
    assert checked > 100


def test_index_policy_serving_spec_round_trip_and_rules():
    """The registered index policy decides from a frame (the pyfunc path) and respects the mask."""
    import pandas as pd

    from retention.policy.env import OBS_COLUMNS
    from retention.policy.model import build_policy, decide, policy_spec

    pool = synthetic_pool(50, ENV, seed=1)
    policy = build_policy(policy_spec("index", ENV, lam=1.5, decay=[[1.0, 0.85, 0.72]] * 4))
    rng = np.random.default_rng(0)
    obs = np.column_stack([rng.uniform(0.2, 0.9, 8), np.tile(pool.accept[:8, :, 0], 1), np.ones(8), np.ones(8),
                           np.zeros(8), np.zeros(8), np.full(8, 0.5), pool.monthly[:8] / 100])
    frame = pd.DataFrame(obs, columns=list(OBS_COLUMNS)).assign(contact_ok=[True] * 4 + [False] * 4)
    out = decide(policy, frame)
    assert out["contact"].iloc[4:].eq(0).all()
    assert out["contact"].iloc[:4].sum() > 0
    assert out["delay_days"].between(0, 7).all()


def test_index_policy_behind_the_decision_service_follows_the_ledger(tmp_path):
    """Serving: the registered index policy decides from the request, the ledger's state and
    ``serving.days_left``; a customer it contacted is not contacted again inside the cooldown, and a
    customer with no churn risk worth a message is not contacted at all."""
    from datetime import UTC, datetime, timedelta

    import pandas as pd

    from retention.messaging.shield import default_shield
    from retention.policy.guard import GuardRules
    from retention.policy.model import build_policy, policy_spec
    from retention.serving.ledger import ContactLedger
    from retention.serving.service import DecisionService

    class Fixed:
        def __init__(self, p):
            self.p = p

        def predict_proba(self, frame):
            return np.column_stack([np.full(len(frame), 1 - self.p), np.full(len(frame), self.p)])

    cfg = load_config("smoke")
    customer = {"customer_id": "7590-VHVEG", "name": "Maria", "gender": "Female", "SeniorCitizen": 0,
                "Partner": "Yes", "Dependents": "No", "tenure": 1, "PhoneService": "No",
                "MultipleLines": "No phone service", "InternetService": "DSL", "OnlineSecurity": "No",
                "OnlineBackup": "Yes", "DeviceProtection": "No", "TechSupport": "No", "StreamingTV": "No",
                "StreamingMovies": "No", "Contract": "Month-to-month", "PaperlessBilling": "Yes",
                "PaymentMethod": "Electronic check", "MonthlyCharges": 29.85, "TotalCharges": 29.85}
    policy = build_policy(policy_spec("index", cfg.env, lam=1.0, decay=[[1.0, 0.85, 0.72]] * 4))
    rules = GuardRules(cfg.env.fatigue_cap, cfg.env.cooldown_days, cfg.env.contact_cost)
    now = datetime(2026, 11, 25, 10, tzinfo=UTC)

    def service(risk, ledger):
        return DecisionService(Fixed(risk), Fixed(0.3), policy, None, default_shield(), cfg.env, cfg.serving, ledger,
                               {"churn-risk": "1"}, TEST_CALENDAR)

    ledger = ContactLedger(f"sqlite:///{tmp_path / 'ledger.db'}", rules, budget=100.0)
    first = service(0.6, ledger).decide(pd.DataFrame([customer]), now=now).iloc[0]
    assert first["decision"]["contact"] and ledger.summary()["contacts"] == 1
    assert 0 <= first["decision"]["delay_days"] <= 7
    again = service(0.6, ledger).decide(pd.DataFrame([customer]), now=now + timedelta(days=1)).iloc[0]
    assert not again["decision"]["contact"]  # the ledger's cooldown: the policy itself declines ...
    assert not any("guard changed" in w for w in again["metadata"]["warnings"])  # ... the guard need not
    quiet = ContactLedger(f"sqlite:///{tmp_path / 'quiet.db'}", rules, budget=100.0)
    low = service(0.001, quiet).decide(pd.DataFrame([customer]), now=now).iloc[0]
    assert not low["decision"]["contact"] and quiet.summary()["contacts"] == 0


# ----------------------------------------------------------------------------- the fast DP equals the full-state one
def full_state_dp(
    risk: np.ndarray,
    accept: np.ndarray,
    value: np.ndarray,
    offer_cost: np.ndarray,
    lam: float | np.ndarray,
    rules: GuardRules,
    days: int,
    contacts: np.ndarray | None = None,
    since: np.ndarray | None = None,
    keep_advantage: bool = False,
    keep_spend: bool = False,
) -> tuple:
    """The DP over the whole state (t, c, s): the slow path the fast one must equal."""
    risk = np.asarray(risk, dtype=float)
    n = len(risk)
    f_cap, cool, kappa = rules.fatigue_cap, max(rules.cooldown_days, 0), rules.contact_cost
    lam = np.broadcast_to(np.asarray(lam, dtype=float), (n,))[:, None]
    contacts = np.zeros(n, dtype=np.int64) if contacts is None else np.asarray(contacts, dtype=np.int64)
    since = np.full(n, cool) if since is None else np.minimum(np.asarray(since, dtype=np.int64), cool)
    rows = np.arange(n)
    s_next = np.minimum(np.arange(cool + 1) + 1, cool)  # days-since index tomorrow when waiting
    s_after = min(1, cool)  # ... and after a contact today
    w = np.zeros((n, f_cap + 1, cool + 1))  # W(t+1, c, s); 0 after the horizon
    sp = np.zeros_like(w)  # expected spend under the DP policy
    adv_all = np.zeros((n, days, f_cap, 4)) if keep_advantage else None
    a = accept[:, :, :f_cap]  # (n, 4, F)
    for t in range(days - 1, -1, -1):
        alive_t = np.maximum(1.0 - risk * t / days, 1e-12)
        r_t = risk * (days - t) / days / alive_t
        q_t = ((1.0 - risk * (t + 1) / days) / alive_t)[:, None, None]
        wait = q_t * w[:, :, s_next]
        cont = q_t * w[:, None, 1:, s_after]  # (n, 1, F): no acceptance, one more contact
        gain = (r_t[:, None] * value[:, None] - (1 + lam) * offer_cost)[:, :, None]  # (n, 4, 1)
        adv = a * (gain - cont) + cont - (1 + lam[:, :, None]) * kappa - wait[:, None, :f_cap, cool]  # (n, 4, F)
        best_adv = adv.max(axis=1)  # (n, F)
        if keep_spend:
            wait_sp = q_t * sp[:, :, s_next]
            cont_sp = q_t * sp[:, None, 1:, s_after]
            q_sp = kappa + a * offer_cost[:, :, None] + (1 - a) * cont_sp
            best_sp = np.take_along_axis(q_sp, adv.argmax(axis=1)[:, None, :], axis=1)[:, 0, :]
            wait_sp[:, :f_cap, cool] = np.where(best_adv > 0, best_sp, wait_sp[:, :f_cap, cool])
            sp = wait_sp
        wait[:, :f_cap, cool] += np.maximum(best_adv, 0.0)
        w = wait
        if adv_all is not None:
            adv_all[:, t] = adv.transpose(0, 2, 1)
    return w[rows, contacts, since], adv_all, sp[rows, contacts, since]



@pytest.mark.parametrize("fatigue,cooldown,days", [(3, 7, 60), (2, 0, 9), (1, 1, 5), (4, 3, 20)])
def test_the_dp_over_cooldown_ends_equals_the_full_state_dp(fatigue, cooldown, days):
    """Values, spends and every advantage (so every action) agree with the DP over (t, c, s), on random
    customers from random start states."""
    rng = np.random.default_rng(fatigue * 100 + cooldown)
    n = 400
    rules = GuardRules(fatigue, cooldown, 0.3)
    risk = rng.beta(1, 2, n)
    accept = np.clip(rng.beta(1, 6, (n, 4, fatigue)) * np.linspace(1, 0.5, fatigue), 0, 1)
    value, cost = rng.uniform(50, 2000, n), rng.uniform(0, 60, (n, 4))
    lam = rng.uniform(0, 2, n)
    contacts, since = rng.integers(0, fatigue + 1, n), rng.integers(0, cooldown + 3, n)
    fast = customer_dp(risk, accept, value, cost, lam, rules, days, contacts=contacts, since=since,
                       keep_advantage=True, keep_spend=True)
    value_ref, adv_ref, spend_ref = full_state_dp(risk, accept, value, cost, lam, rules, days, contacts=contacts,
                                                  since=since, keep_advantage=True, keep_spend=True)
    np.testing.assert_allclose(fast.value, value_ref, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(fast.spend, spend_ref, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(fast.advantage, adv_ref, rtol=1e-10, atol=1e-9)
    assert (np.sign(np.round(fast.advantage, 6)) == np.sign(np.round(adv_ref, 6))).all()
    window = customer_dp(risk, accept, value, cost, lam, rules, days, advantage_days=(2, min(days, 6)))
    np.testing.assert_allclose(window.advantage, adv_ref[:, 2:min(days, 6)], rtol=1e-10, atol=1e-9)


def test_serving_actions_from_the_week_window_equal_those_from_the_whole_tables():
    """The index policy in serving reads only today's and the next week's advantages; on random customers
    (any days left, fatigue and cooldown) its actions equal those read from the whole horizon's tables."""
    from retention.policy.baselines import _actions
    from retention.policy.cohort import offer_costs
    from retention.policy.env import observation
    from retention.policy.guard import action_mask
    from retention.policy.lagrangian import LagrangeIndexPolicy, _decision, _next_review, row_advantage

    env = load_config("cpu").env
    rules = GuardRules(env.fatigue_cap, env.cooldown_days, env.contact_cost)
    rng = np.random.default_rng(5)
    n = 3000
    risk, accept = rng.beta(1, 3, n), np.sort(rng.beta(1, 8, (n, 4)), axis=1)
    monthly = rng.uniform(20, 110, n)
    fatigue = rng.integers(0, env.fatigue_cap + 1, n).astype(float)
    since = rng.choice([999.0, 1.0, 3.0, 10.0], n)
    budget = rng.choice([0.0, 50.0, 5000.0], n)
    for days_left in (env.horizon_days, 40, 5, 1):
        obs = observation(risk, accept, budget, 10_000.0, since, fatigue, np.full(n, days_left), monthly, rules,
                          env.horizon_days)
        contact_ok, offer_ok = action_mask(budget, fatigue, since, offer_costs(monthly, env.offer_months), rules)
        policy = LagrangeIndexPolicy(env, lam=0.7)
        fast = policy.act(obs, contact_ok, offer_ok)
        adv, tables, t0, fat = row_advantage(obs, env, 0.7, policy.decay)  # the whole horizon's tables
        ok = contact_ok & (fat < rules.fatigue_cap)
        contact, offer = _decision(adv, ok, offer_ok)
        delay = _next_review(tables.max(axis=3) > 0, t0, fat + contact,
                             np.where(contact, t0 + rules.cooldown_days, t0 + 1))
        np.testing.assert_array_equal(fast, _actions(contact, offer, delay=delay))
        assert fast[:, 0].any() and not fast[:, 0].all()  # both kinds of decision occur

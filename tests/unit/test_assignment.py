"""Assignment at decision time (issue #25): a persistent holdout and ε-exploration, with propensities.

The draws are keyed hashes, so these tests are deterministic: the same ids give the same draws on
every machine. The frequency checks allow four standard errors on 20,000 decisions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, create_engine, insert, inspect, select

from retention.config import load_config
from retention.errors import ConfigError
from retention.messaging.shield import default_shield
from retention.policy.baselines import TopOfferEveryone
from retention.policy.guard import GuardRules
from retention.serving import inference_log
from retention.serving.assignment import (
    ARMS,
    EXPLOIT,
    EXPLORE,
    HOLDOUT,
    allowed_arms,
    arm_of,
    assign,
    in_holdout,
    unit_hashes,
)
from retention.serving.ledger import ContactLedger
from retention.serving.service import DecisionService
from retention.serving.tables import create_schema

N = 20_000
NOW = datetime(2026, 12, 2, 11, tzinfo=UTC)
CALENDAR = (("may", "mon", 1.0),)


def random_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    contact_ok = rng.random(N) < 0.8
    offer_ok = rng.random((N, 4)) < 0.7
    allowed = allowed_arms(contact_ok, offer_ok)
    policy_arm = np.array([rng.choice(np.flatnonzero(row)) for row in allowed])
    return allowed, policy_arm


def test_taken_arms_follow_the_logged_probabilities():
    allowed, policy_arm = random_case()
    draws = unit_hashes("explore:test", [f"decision-{i}" for i in range(N)])
    got = assign(policy_arm, allowed, np.zeros(N, dtype=bool), 0.2, draws)
    assert np.allclose(got.probs.sum(axis=1), 1.0) and np.all(got.probs[~allowed] == 0)
    assert np.all(allowed[np.arange(N), got.arm])  # exploration never leaves the guard's mask
    np.testing.assert_array_equal(got.propensity, got.probs[np.arange(N), got.arm])
    for arm in range(len(ARMS)):
        expected = got.probs[:, arm].sum()
        se = np.sqrt((got.probs[:, arm] * (1 - got.probs[:, arm])).sum())
        assert abs((got.arm == arm).sum() - expected) < 4 * se, arm
    explored = np.array([g == EXPLORE for g in got.group])
    assert abs(explored.mean() - 0.2) < 4 * np.sqrt(0.2 * 0.8 / N)
    assert np.all(got.arm[~explored] == policy_arm[~explored]) and set(got.group) == {EXPLORE, EXPLOIT}


def test_epsilon_zero_is_the_policy_and_epsilon_one_is_uniform_over_allowed_arms():
    allowed, policy_arm = random_case(1)
    draws = unit_hashes("explore:test", [str(i) for i in range(N)])
    exploit = assign(policy_arm, allowed, np.zeros(N, dtype=bool), 0.0, draws)
    np.testing.assert_array_equal(exploit.arm, policy_arm)
    assert np.all(exploit.propensity == 1.0)
    uniform = assign(policy_arm, allowed, np.zeros(N, dtype=bool), 1.0, draws)
    np.testing.assert_allclose(uniform.propensity, 1.0 / allowed.sum(axis=1))


def test_the_holdout_is_stable_per_customer_and_its_share_is_the_setting():
    ids = [f"{i:04d}-CUST" for i in range(N)]
    held = in_holdout(ids, "salt-a", 0.10)
    assert abs(held.mean() - 0.10) < 0.01  # within one point of the setting
    np.testing.assert_array_equal(held, in_holdout(list(reversed(ids)), "salt-a", 0.10)[::-1])  # order-free
    other = in_holdout(ids, "salt-b", 0.10)
    assert abs((held & other).mean() - 0.01) < 0.005  # another salt: an independent holdout
    assert not in_holdout(ids, "salt-a", 0.0).any()
    got = assign(np.ones(N, dtype=np.int64), np.ones((N, 5), dtype=bool), held, 0.5,
                 unit_hashes("explore:test", ids))
    assert np.all(got.arm[held] == 0) and all((g == HOLDOUT) == h for g, h in zip(got.group, held, strict=True))
    np.testing.assert_array_equal(got.policy_arm[held], 1)  # the ghost action is kept


def service(path, **serving) -> DecisionService:
    cfg = load_config("smoke", {f"serving.{k}": v for k, v in serving.items()})
    rules = GuardRules(cfg.env.fatigue_cap, cfg.env.cooldown_days, cfg.env.contact_cost)
    ledger = ContactLedger(f"sqlite:///{path}", rules, budget=1e9)
    return DecisionService(Fixed(0.6), Fixed(0.3), TopOfferEveryone(), None, default_shield(), cfg.env, cfg.serving,
                           ledger, {"churn-risk": "1"}, CALENDAR)


class Fixed:
    def __init__(self, p: float):
        self.p = p

    def predict_proba(self, f: pd.DataFrame) -> np.ndarray:
        return np.column_stack([np.full(len(f), 1 - self.p), np.full(len(f), self.p)])


CUSTOMER = {"tenure": 5, "MonthlyCharges": 70.0, "Contract": "Month-to-month", "SeniorCitizen": 0,
            "local_time": "2026-12-02T10:00:00", "timezone": "Europe/Berlin", "with_message": False}


def test_served_holdout_customers_are_never_contacted_and_the_log_holds_what_evaluation_needs(tmp_path):
    svc = service(tmp_path / "ledger.db", holdout_share=0.2, explore_epsilon=0.1)
    req = pd.DataFrame([{**CUSTOMER, "customer_id": f"c-{i}", "request_id": f"r-{i}"} for i in range(1500)])
    out = svc.decide(req, now=NOW)
    groups = [m["assignment"] for m in out["metadata"]]
    contact = np.array([d["contact"] for d in out["decision"]])
    held = np.array([g == HOLDOUT for g in groups])
    assert 0.17 < held.mean() < 0.23 and not contact[held].any()  # 0 holdout contacts
    assert contact[~held].mean() > 0.85  # the policy contacts everyone; exploration sometimes not
    assert all("persistent holdout" in " ".join(m["warnings"]) for m, h in zip(out["metadata"], held, strict=True)
               if h)
    log = inference_log.read_window(svc.ledger.engine)
    assert len(log) == 1500 and log["assignment"].tolist() == groups
    probs = np.array([json.loads(p) for p in log["arm_probs"]])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    taken = arm_of(log["contact"].to_numpy(), log["offer_level"].to_numpy())
    np.testing.assert_allclose(log["propensity"], probs[np.arange(len(log)), taken], atol=1e-6)
    ghosts = log[log["assignment"] == HOLDOUT]
    assert ghosts["policy_contact"].all() and not ghosts["contact"].any()  # what the policy would have done
    assert log["guard_override"].notna().all() and log["proposed_offer"].notna().all()
    state = set(json.loads(log["observation"].iloc[0]))
    assert state >= {"churn_risk", "budget_remaining", "fatigue_count", "days_left"}
    assert len(json.loads(log["arm_values"].iloc[0])) == 5 and len(json.loads(log["arm_mask"].iloc[0])) == 5


def test_the_same_customer_stays_in_or_out_and_a_replayed_request_gets_the_same_arm(tmp_path):
    svc = service(tmp_path / "ledger.db", holdout_share=0.3, explore_epsilon=0.5)
    req = pd.DataFrame([{**CUSTOMER, "customer_id": f"c-{i}", "request_id": f"r-{i}", "dry_run": True}
                        for i in range(300)])
    first = svc.decide(req, now=NOW)
    again = svc.decide(req.assign(customer_id=[f" C-{i} " for i in range(300)]), now=NOW.replace(hour=15))
    assert first["decision"].tolist() == again["decision"].tolist()  # normalised ids, the same decision ids
    assert [m["assignment"] for m in first["metadata"]] == [m["assignment"] for m in again["metadata"]]
    later = svc.decide(req.assign(request_id=[f"s-{i}" for i in range(300)]), now=NOW)
    assert ([m["assignment"] == HOLDOUT for m in first["metadata"]]
            == [m["assignment"] == HOLDOUT for m in later["metadata"]])  # new decisions, the same holdout


def test_bad_assignment_settings_name_the_field():
    with pytest.raises(ConfigError, match="serving.holdout_share"):
        load_config("smoke", {"serving.holdout_share": 1.5})
    with pytest.raises(ConfigError, match="serving.explore_epsilon"):
        load_config("smoke", {"serving.explore_epsilon": -0.1})


def test_a_ledger_made_before_the_new_log_columns_gains_them_and_keeps_its_rows(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    old = MetaData()
    table = Table("inference_log", old, Column("id", Integer, primary_key=True), Column("request_id", String(200)),
                  Column("contact", Boolean))
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(table), [{"request_id": "before", "contact": True}])
    create_schema(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("inference_log")}
    assert {"assignment", "propensity", "arm_probs", "observation", "policy_contact"} <= columns
    with engine.connect() as conn:
        rows = conn.execute(select(inference_log.inference_log.c.request_id,
                                   inference_log.inference_log.c.assignment)).all()
    assert rows == [("before", None)]

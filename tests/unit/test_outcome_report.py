"""The outcome report: its statistics, the per-customer join, and the step against a simulated world.

The world (``retention.monitoring.world``) decides real customers through the real serving path and
knows the true churn reduction, so the report's interval can be checked against the truth.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from retention.config import load_config
from retention.monitoring import uplift as U
from retention.monitoring.world import WorldConfig, draw_outcomes, simulate_decisions, true_uplift
from tests.unit.test_monitoring import make_service

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


# ----------------------------------------------------------------------------- the maths
def test_newcombe_interval_contains_its_estimate_and_matches_a_published_value():
    # Newcombe (1998), table II, example (a): 56/70 vs 48/80 -> 0.2000, 95 % [0.0524, 0.3339]
    est = U.difference_of_proportions(56, 70, 48, 80)
    assert est.value == pytest.approx(0.2) and est.low == pytest.approx(0.0524, abs=5e-4)
    assert est.high == pytest.approx(0.3339, abs=5e-4)
    for x0, n0, x1, n1 in ((0, 10, 0, 20), (10, 10, 0, 5), (3, 200, 40, 1800)):
        e = U.difference_of_proportions(x0, n0, x1, n1)
        assert e.low <= e.value <= e.high


def test_expected_auc_is_the_mean_realised_auc_of_calibrated_scores():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    p = rng.beta(1, 3, 400)
    realised = [roc_auc_score(rng.random(400) < p, p) for _ in range(300)]
    assert U.expected_performance(p, 0.5)["auc"] == pytest.approx(np.mean(realised), abs=0.01)
    ties = np.repeat([0.2, 0.6], 50)  # tied scores count half
    assert U._auc_expected(ties) == pytest.approx(np.mean(
        [roc_auc_score(y, ties) for y in (rng.random((200, 100)) < ties) if 0 < y.sum() < 100]), abs=0.01)


def test_calibration_alarm_fires_on_a_biased_model_and_not_on_a_faithful_one():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.4, 3000)
    alarms_faithful = sum(U.calibration("x", p, rng.random(3000) < p, checks=5, alpha=0.05, tolerance=0.15,
                                        min_outcomes=50, n_boot=20, seed=s).alarm for s in range(40))
    assert alarms_faithful <= 2  # <= 5 % in a faithful world (Bonferroni makes it rarer still)
    biased = U.calibration("x", p, rng.random(3000) < 0.6 * p, checks=5, alpha=0.05, tolerance=0.15,
                           min_outcomes=50, n_boot=50)
    assert biased.alarm and biased.o_e.high < 1 and biased.o_e.low <= biased.o_e.value <= biased.o_e.high
    assert biased.ece.low <= biased.ece.value <= biased.ece.high


# ----------------------------------------------------------------------------- the join per customer
def _log(rows: list[dict]) -> pd.DataFrame:
    base = {"replayed": False, "dry_run": False, "churn_risk": 0.3, "accept_0": 0.1, "accept_1": 0.1,
            "accept_2": 0.2, "accept_3": 0.4, "offer_level": 3, "policy_contact": True}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_churn_labels_mature_by_decision_and_explicit_labels_count_at_once():
    log = _log([
        {"customer_key": "a", "request_id": "r1", "logged_at": NOW - timedelta(days=40), "contact": True,
         "assignment": "exploit"},  # matured, no report: retained
        {"customer_key": "b", "request_id": "r2", "logged_at": NOW - timedelta(days=3), "contact": True,
         "assignment": "exploit"},  # not matured, no report: pending
        {"customer_key": "c", "request_id": "r3", "logged_at": NOW - timedelta(days=3), "contact": False,
         "assignment": "holdout"},  # reported churned by customer, no request id
        {"customer_key": "d", "request_id": "r4", "logged_at": NOW - timedelta(days=3), "contact": True,
         "assignment": "explore"},  # reported not churned by request id
    ])
    found = pd.DataFrame({"request_id": [None, "r4", "other"], "customer_key": ["c", "d", "a"],
                          "churned": [True, False, True], "revenue": [None, 70.0, None],
                          "opted_out": [None, True, None], "accepted": [None, True, None],
                          "outcome_date": [NOW.date()] * 3})
    out = U.customer_outcomes(log, found, NOW, horizon_days=30)
    assert out.loc["a", "churned"] == False  # noqa: E712
    assert out.loc["b", "churned"] is None
    assert out.loc["c", "churned"] == True and out.loc["c", "group"] == "holdout"  # noqa: E712
    assert out.loc["d", "churned"] == False and out.loc["d", "opted_out"]  # noqa: E712
    assert out.loc["d", "revenue"] == 70.0 and np.isnan(out.loc["a", "revenue"])
    # an outcome naming another decision ("other") never labels customer a
    assert out.loc["a", "predicted_reduction"] == pytest.approx(0.3 * 0.4)


# ----------------------------------------------------------------------------- against a simulated world
@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    from tests.conftest import _mirror

    df = pd.read_csv(_mirror() / "telco" / "WA_Fn-UseC_-Telco-Customer-Churn.csv")
    df["TotalCharges"] = pd.to_numeric(df["TotalCharges"], errors="coerce").fillna(0.0)
    return df


def test_world_holdout_is_never_contacted_and_truth_differs_from_the_models(customers, tmp_path):
    import mlflow

    mlflow.tracing.disable()
    service = make_service(f"sqlite:///{tmp_path / 'w.db'}")
    world = WorldConfig()
    log = simulate_decisions(service, customers.head(3000), world, now=datetime.now(UTC))
    assert len(log) == 3000 and not log["dry_run"].any()
    holdout = log["assignment"].eq("holdout")
    assert abs(holdout.mean() - 0.10) < 0.015 and not (holdout & log["contact"]).any()
    truth = true_uplift(log, world)
    faithful = true_uplift(log, WorldConfig(accept_factor=1.0, churn_shift=1.0, harm=0.0))
    assert truth["all"] < faithful["all"]  # lower acceptance and harm: the campaign does less than predicted


FAITHFUL = WorldConfig(accept_factor=1.0, churn_shift=1.0, harm=0.0, opt_out=0.0)


@pytest.mark.parametrize("world,alarm", [(WorldConfig(), True), (FAITHFUL, False)])
def test_the_report_covers_the_worlds_uplift_through_the_documented_interface(customers, tracking, world, alarm,
                                                                              capsys):
    """Decisions through the real service, outcomes through `retention outcomes`, the report through
    `retention outcome_report`: its interval covers the world's true churn reduction, and the
    calibration alarm (exit 1) fires where acceptance is 0.6 x the prediction, not in a faithful world."""
    from retention.cli import main

    url = f"sqlite:///{tracking / 'ledger.db'}"
    service = make_service(url)
    log = simulate_decisions(service, customers, world, now=datetime.now(UTC), seed=3)
    drawn = draw_outcomes(log, world, np.random.default_rng(3))
    drawn.drop(columns=["customer_key"]).to_csv(tracking / "outcomes.csv", index=False)
    assert main(["--no-progress", "outcomes", "--input", str(tracking / "outcomes.csv"), "--ledger-url", url]) == 0
    code = main(["--no-progress", "outcome_report", "--profile", "smoke", "--window", "all", "--ledger-url", url,
                 "--json", str(tracking / "report.json")])
    printed = capsys.readouterr().out
    assert code == (1 if alarm else 0), printed
    result = json.loads((tracking / "report.json").read_text())
    red = result["uplift"]["all"]["churn_reduction"]
    truth = true_uplift(log, world)["all"]
    assert red["low"] <= truth <= red["high"], (red, truth)
    assert result["customers"]["eligible"] == len(customers) and result["customers"]["pending"] == 0
    assert ("accept_15%" in result["alarms"]) is alarm
    assert "churn reduction" in printed and "ALARM" in printed if alarm else "ALARM" not in printed
    import mlflow

    run = mlflow.search_runs(experiment_names=["retention-test"], output_format="list")[0]
    assert "uplift/all_churn_reduction" in run.data.metrics
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "plots")}
    assert {"plots/outcome_uplift.png", "plots/outcome_calibration.png", "plots/outcome_performance.png"} <= names
    text = json.dumps(result)
    assert not any(cid in text for cid in customers["customerID"].head(50))  # no raw id reaches the report


def test_report_without_real_decisions_says_so(tracking, capsys):
    from retention.cli import main

    url = f"sqlite:///{tracking / 'ledger.db'}"
    make_service(url)  # a ledger database with its (empty) inference log
    assert main(["--no-progress", "outcome_report", "--profile", "smoke", "--ledger-url", url]) == 2
    assert "no real decision" in capsys.readouterr().err
    cfg = load_config("smoke")
    assert cfg.monitoring.alarm_alpha == 0.05


def test_a_churn_event_feed_counts_the_unreported_as_retained_and_a_full_feed_leaves_them_pending():
    log = _log([{"customer_key": k, "request_id": f"r-{k}", "logged_at": NOW - timedelta(days=2), "contact": True,
                 "assignment": "exploit"} for k in "abc"])
    events = pd.DataFrame({"request_id": ["r-a"], "customer_key": ["a"], "churned": [True],
                           "outcome_date": [NOW.date()]})
    out = U.customer_outcomes(log, events, NOW, horizon_days=30)  # auto: only churns are ever reported
    assert out["churned"].tolist() == [True, False, False]
    full = pd.concat([events, pd.DataFrame({"request_id": ["r-b"], "customer_key": ["b"], "churned": [False],
                                            "outcome_date": [NOW.date()]})])
    out = U.customer_outcomes(log, full, NOW, horizon_days=30)  # a full feed: c is pending, not retained
    assert out.loc["a", "churned"] == True and out.loc["b", "churned"] == False  # noqa: E712
    assert out.loc["c", "churned"] is None
    assert U.customer_outcomes(log, events, NOW, 30, unreported="pending").loc["b", "churned"] is None

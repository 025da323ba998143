"""Outcomes meet the decision they are about, and no other (issue #25's four join faults).

Each test is one fault found by running the join from outside; each fails on the join as it was
(request ids falling back to the customer, only contacted decisions matched, dry runs joined, and
outcomes read from the start of the decisions' own window).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
from sqlalchemy import create_engine, insert

from retention.monitoring.join import join_outcomes, outcome_cohort
from retention.monitoring.outcomes import outcomes
from retention.serving.tables import create_schema, inference_log

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def decision(request_id: str | None, customer_key: str, logged_at: datetime = NOW, contact: bool = True,
             dry_run: bool = False, offer_level: int = 3) -> dict:
    """One inference-log row with the columns the join reads."""
    return {"request_id": request_id, "customer_key": customer_key, "logged_at": logged_at, "contact": contact,
            "dry_run": dry_run, "replayed": False, "offer_level": offer_level, "churn_risk": 0.4,
            "accept_0": 0.1, "accept_1": 0.12, "accept_2": 0.15, "accept_3": 0.3}


def outcome(request_id: str | None, customer_key: str | None, accepted: bool | None = None,
            churned: bool | None = None, day: date = NOW.date()) -> dict:
    return {"request_id": request_id, "customer_key": customer_key, "accepted": accepted, "churned": churned,
            "outcome_date": day}


def test_an_outcome_naming_another_request_is_not_attached_to_the_customers_decision_in_the_window():
    log = pd.DataFrame([decision("B", "k1")])  # request A (same customer) was decided outside the window
    joined = join_outcomes(log, pd.DataFrame([outcome("A", "k1", accepted=True)]))
    assert joined.empty


def test_a_churn_without_request_id_joins_a_decision_that_made_no_contact():
    log = pd.DataFrame([decision(None, "k2", contact=False, offer_level=0)])
    joined = join_outcomes(log, pd.DataFrame([outcome(None, "k2", churned=True, day=NOW.date() + timedelta(days=9))]))
    assert len(joined) == 1
    assert joined.loc[0, "churned"] is True and not bool(joined.loc[0, "contact"])


def test_the_latest_decision_on_or_before_the_outcome_is_the_one_matched():
    log = pd.DataFrame([decision(None, "k2", logged_at=NOW - timedelta(days=5), contact=True),
                        decision(None, "k2", logged_at=NOW, contact=False, offer_level=0),
                        decision(None, "k2", logged_at=NOW + timedelta(days=3), contact=True)])
    joined = join_outcomes(log, pd.DataFrame([outcome(None, "k2", churned=False, day=NOW.date() + timedelta(days=1))]))
    assert len(joined) == 1 and not bool(joined.loc[0, "contact"])


def test_dry_runs_never_meet_an_outcome():
    log = pd.DataFrame([decision("D", "k3", dry_run=True), decision(None, "k4", dry_run=True)])
    found = pd.DataFrame([outcome("D", "k3", accepted=True), outcome(None, "k4", churned=True)])
    assert join_outcomes(log, found).empty


def _log_row(request_id: str, customer_key: str, logged_at: datetime, dry_run: bool = False) -> dict:
    return {**decision(request_id, customer_key, logged_at, dry_run=dry_run), "model_versions": "{}",
            "delay_days": 0, "shield_violations": "{}"}


def test_a_label_that_arrives_weeks_after_its_decision_still_meets_it(tmp_path):
    """The drift step reads the outcome cohort, not the window: a churn reported 20 days after the
    decision is joined although the decision is outside the last day's window."""
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_schema(engine)
    decided = NOW - timedelta(days=20)
    with engine.begin() as conn:
        conn.execute(insert(inference_log), [_log_row("early", "k5", decided), _log_row("late", "k6", NOW),
                                             _log_row("dry", "k7", decided, dry_run=True)])
        conn.execute(insert(outcomes), [{**outcome("early", "k5", churned=True), "recorded_at": NOW},
                                        {**outcome("dry", "k7", churned=True), "recorded_at": NOW}])
    start = NOW - timedelta(days=1)  # a "24h" window
    decisions, found = outcome_cohort(engine, start, NOW + timedelta(seconds=1), horizon_days=30)
    assert set(decisions["request_id"]) == {"early", "late"}  # the window's decision, those before it, no dry run
    joined = join_outcomes(decisions, found)
    assert len(joined) == 1 and joined.loc[0, "churned"] is True
    # a horizon shorter than the delay leaves the decision out of the cohort
    decisions, found = outcome_cohort(engine, start, NOW + timedelta(seconds=1), horizon_days=10)
    assert join_outcomes(decisions, found).empty

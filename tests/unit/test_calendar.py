"""Decisions do not swing with the calendar (issue #25).

The acceptance model learns Bank telemarketing, whose month effect is that bank's campaign calendar.
Acceptance is therefore averaged over the model's training calendar, and the contact's date never
enters a decision. The stand-in model here has a strong month effect (December, March, September
and October high, as in the Bank data), so each test fails when the date leaks into a decision.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from retention.config import load_config
from retention.errors import RegistryError
from retention.messaging.shield import default_shield
from retention.monitoring import drift as D
from retention.monitoring import spec as S
from retention.monitoring import window as W
from retention.policy.baselines import GreedyExpectedValue
from retention.policy.guard import GuardRules
from retention.serving.ledger import ContactLedger
from retention.serving.service import DecisionService
from retention.tabular.features import (
    ACCEPT_FEATURES,
    calendar_distribution,
    calendar_from_metadata,
    offer_acceptance,
    telco_acceptance_frame,
)

HIGH_MONTHS = ("dec", "mar", "sep", "oct")
CALENDAR = (("may", "mon", 0.30), ("may", "fri", 0.20), ("jul", "wed", 0.25), ("dec", "tue", 0.15),
            ("oct", "thu", 0.10))


class CalendarAccept:
    """Acceptance rising with the offer, far higher in the Bank's busy months, and reading every feature."""

    def predict_proba(self, f: pd.DataFrame) -> np.ndarray:
        assert list(f.columns) == list(ACCEPT_FEATURES)
        p = (0.03 + 0.05 * f["offer_level"].to_numpy(float)
             + 0.30 * f["month"].isin(HIGH_MONTHS).to_numpy(float)
             + 0.02 * (f["day_of_week"] == "fri").to_numpy(float)
             + 0.04 * (f["age_band"] == "65_plus").to_numpy(float)
             + 0.03 * (f["partner"] == "yes").to_numpy(float)
             - 0.02 * (f["campaign_contacts"].to_numpy(float) - 1))
        return np.column_stack([1 - p, p])


class StandInRisk:
    def predict_proba(self, f: pd.DataFrame) -> np.ndarray:
        p = np.clip(0.1 + 0.5 * (f["Contract"] == "Month-to-month").to_numpy(float)
                    - 0.002 * f["tenure"].fillna(0).to_numpy(float), 0.01, 0.95)
        return np.column_stack([1 - p, p])


@pytest.fixture(scope="module")
def telco() -> pd.DataFrame:
    from tests.conftest import _mirror

    df = pd.read_csv(_mirror() / "telco" / "WA_Fn-UseC_-Telco-Customer-Churn.csv")
    df["TotalCharges"] = pd.to_numeric(df["TotalCharges"], errors="coerce").fillna(0.0)
    return df.sample(2400, random_state=3).reset_index(drop=True)


def service(path) -> DecisionService:
    cfg = load_config("smoke")
    rules = GuardRules(cfg.env.fatigue_cap, cfg.env.cooldown_days, cfg.env.contact_cost)
    ledger = ContactLedger(f"sqlite:///{path}", rules, budget=1e7)
    return DecisionService(StandInRisk(), CalendarAccept(), GreedyExpectedValue(cfg.env), None, default_shield(),
                           cfg.env, cfg.serving, ledger, {"churn-risk": "stand-in"}, CALENDAR)


def slow_offer_acceptance(model, customers: pd.DataFrame, contacts, calendar) -> np.ndarray:
    """The definition, one model call per (calendar cell, offer): sum_c w_c P(accept | x, k, cell)."""
    out = np.zeros((len(customers), 4))
    for month, day, weight in calendar:
        for k in range(4):
            frame = telco_acceptance_frame(customers, k, campaign_contacts=contacts, month=month, day_of_week=day)
            out[:, k] += weight * model.predict_proba(frame[list(ACCEPT_FEATURES)])[:, 1]
    return out / sum(w for _, _, w in calendar)


def test_the_calendar_average_equals_its_definition_on_random_customers(telco):
    rng = np.random.default_rng(0)
    customers = telco.sample(500, random_state=1).reset_index(drop=True)
    customers.loc[rng.random(len(customers)) < 0.1, "Partner"] = None  # a missing partner is its own row
    contacts = rng.integers(1, 5, size=len(customers)).astype(float)
    cache: dict = {}
    fast = offer_acceptance(CalendarAccept(), customers, contacts, CALENDAR, cache)
    np.testing.assert_allclose(fast, slow_offer_acceptance(CalendarAccept(), customers, contacts, CALENDAR),
                               rtol=0, atol=1e-12)
    assert 0 < len(cache) <= 2 * 3 * 4  # age band x partner x contacts: the distinct rows scored
    again = offer_acceptance(CalendarAccept(), customers.iloc[::-1].reset_index(drop=True), contacts[::-1],
                             CALENDAR, cache)  # from the cache, in another order
    np.testing.assert_array_equal(again, fast[::-1])


def test_the_same_customers_get_the_same_decisions_on_30_november_and_1_december(telco, tmp_path):
    """Stated tolerance: none. Every decision field and prediction is identical."""
    svc = service(tmp_path / "ledger.db")
    req = W.as_requests(telco.head(400), datetime(2026, 12, 2, tzinfo=UTC)).drop(columns=["local_time"])
    req["request_id"] = [f"r-{i}" for i in range(len(req))]  # the same decision ids: the same exploration draws
    nov = svc.decide(req.assign(local_time="2026-11-30T10:00:00"), now=datetime(2026, 11, 30, 9, tzinfo=UTC))
    dec = svc.decide(req.assign(local_time="2026-12-01T10:00:00"), now=datetime(2026, 12, 1, 9, tzinfo=UTC))
    assert nov["decision"].tolist() == dec["decision"].tolist()
    fields = ("churn_risk", "accept_prob", "expected_value")
    assert [{k: m[k] for k in fields} for m in nov["metadata"]] == [{k: m[k] for k in fields} for m in dec["metadata"]]
    offers = {d["offer_percentage"] for d in dec["decision"] if d["contact"]}
    assert len(offers) >= 2  # the customers differ: the test compares real, varied decisions


def test_a_stable_window_across_a_month_boundary_raises_no_drift_alarm(telco, tmp_path):
    svc = service(tmp_path / "live.db")
    reference = W.reference_frame(svc, telco.iloc[:1600], now=datetime(2026, 11, 20, 12, tzinfo=UTC))
    W.send_traffic(svc, telco.iloc[1600:], now=datetime(2026, 12, 2, 12, tzinfo=UTC), spread_days=4)
    from retention.serving import inference_log

    window = inference_log.read_window(svc.ledger.engine)
    months = {t[:7] for t in W.spread_local_times(len(window), datetime(2026, 12, 2, 12, tzinfo=UTC), 4, 1)}
    assert months == {"2026-11", "2026-12"}  # the window really crosses the month
    result = D.compute_drift(reference, window, S.load_spec(), report=False)
    assert not result.detected, [(c.column, round(c.severity, 2)) for c in result.columns[:3]]
    assert not any(c.column.startswith("accept_") for c in result.drifted)


def test_the_training_calendar_is_the_mix_of_months_and_weekdays_and_travels_as_metadata():
    frame = pd.DataFrame({"month": ["may"] * 6 + ["dec"] * 2, "day_of_week": ["mon"] * 3 + ["fri"] * 5})
    calendar = calendar_distribution(frame)
    assert calendar == (("dec", "fri", 0.25), ("may", "fri", 0.375), ("may", "mon", 0.375))
    stored = {"calendar": [list(c) for c in calendar]}  # as train_accept logs it (JSON in the MLmodel file)
    assert calendar_from_metadata(stored, "offer-accept v1") == calendar
    with pytest.raises(RegistryError, match="offer-accept v7 has no training calendar.*train_accept"):
        calendar_from_metadata({}, "offer-accept v7")

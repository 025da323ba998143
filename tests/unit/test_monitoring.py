"""Monitoring: outcomes, drift of the inference log (Evidently), the ``drift`` step.

No trained model is needed: the decision service runs with stand-in scorers (a hand-written
logistic churn score and a simple acceptance curve) and the real policy baseline, guard, request
validation and inference log. Customers are real Telco rows from the mirror: a 5,600-row
"train" part scored as the reference, the other 1,443 rows as live traffic.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from retention.config import load_config
from retention.errors import EmptyWindowError, MonitoringError, RowsError
from retention.messaging.shield import default_shield
from retention.monitoring import drift as D
from retention.monitoring import spec as S
from retention.monitoring import window as W
from retention.monitoring.join import join_outcomes
from retention.monitoring.outcomes import outcomes, parse_outcomes, read_outcomes, record_outcomes
from retention.policy.baselines import GreedyExpectedValue
from retention.serving import inference_log
from retention.serving.assignment import in_holdout
from retention.serving.ledger import ContactLedger
from retention.serving.service import DecisionService

# the acceptance models here are stand-ins: any (month, weekday, share) mix serves as their calendar
TEST_CALENDAR = (("may", "mon", 0.6), ("dec", "fri", 0.4))

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
WINDOW_ROWS = 300
NAMES = ("Zebulon", "Quintessa", "Bartholomew")


class StandInRisk:
    """Churn risk from a fixed logistic score on the usual Telco drivers (month-to-month, fibre,
    electronic check, short tenure, high charges): predictions respond to the inputs as a model's would."""

    def predict_proba(self, f: pd.DataFrame) -> np.ndarray:
        def isv(col: str, v: str) -> np.ndarray:
            return (f[col] == v).to_numpy(dtype=float)

        def num(col: str) -> np.ndarray:
            return pd.to_numeric(f[col], errors="coerce").fillna(0).to_numpy(dtype=float)

        z = (-1.2 + 1.3 * isv("Contract", "Month-to-month") + 0.6 * isv("InternetService", "Fiber optic")
             + 0.5 * isv("PaymentMethod", "Electronic check") - 0.03 * num("tenure")
             + 0.01 * (num("MonthlyCharges") - 65))
        p = 1 / (1 + np.exp(-z))
        return np.column_stack([1 - p, p])


class StandInAccept:
    """Acceptance rising with the offer, higher for seniors, a little higher on Fridays."""

    def predict_proba(self, f: pd.DataFrame) -> np.ndarray:
        p = (0.04 + 0.04 * f["offer_level"].to_numpy(float) + 0.03 * (f["age_band"] == "65_plus").to_numpy(float)
             + 0.01 * (f["day_of_week"] == "fri").to_numpy(float)
             - 0.01 * (f["campaign_contacts"].to_numpy(float) - 1))
        return np.column_stack([1 - p, p])


def make_service(url: str) -> DecisionService:
    cfg = load_config("smoke")
    ledger = ContactLedger(url, _rules(cfg), budget=1e7)
    return DecisionService(StandInRisk(), StandInAccept(), GreedyExpectedValue(cfg.env), None, default_shield(),
                           cfg.env, cfg.serving, ledger, {"churn-risk": "stand-in"}, TEST_CALENDAR)


def _rules(cfg):
    from retention.policy.guard import GuardRules

    return GuardRules(cfg.env.fatigue_cap, cfg.env.cooldown_days, cfg.env.contact_cost)


@pytest.fixture(scope="module")
def telco() -> tuple[pd.DataFrame, pd.DataFrame]:
    from tests.conftest import _mirror

    df = pd.read_csv(_mirror() / "telco" / "WA_Fn-UseC_-Telco-Customer-Churn.csv")
    df["TotalCharges"] = pd.to_numeric(df["TotalCharges"], errors="coerce").fillna(0.0)
    order = np.random.default_rng(0).permutation(len(df))
    return df.iloc[order[:5600]].reset_index(drop=True), df.iloc[order[5600:]].reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(telco, tmp_path_factory) -> pd.DataFrame:
    url = f"sqlite:///{tmp_path_factory.mktemp('ref') / 'prod.db'}"
    return W.reference_frame(make_service(url), telco[0], now=NOW)


def requests(customers: pd.DataFrame, seed: int, with_message: bool = False) -> pd.DataFrame:
    """Live traffic: Telco rows as requests, local times spread over the week before NOW."""
    return W.as_requests(customers, NOW, 7, seed + 100).assign(with_message=with_message)


def score(service: DecisionService, req: pd.DataFrame, now: datetime = NOW) -> pd.DataFrame:
    """Decide and return this batch's inference-log rows."""
    service.decide(req, now=now)
    return inference_log.read_window(service.ledger.engine, now, now + timedelta(seconds=1))


@pytest.fixture(scope="module")
def live(telco, tmp_path_factory) -> pd.DataFrame:
    """Every held-out customer decided once (dry runs), as the production log holds them."""
    service = make_service(f"sqlite:///{tmp_path_factory.mktemp('live') / 'prod.db'}")
    assert W.send_traffic(service, telco[1], now=NOW) == len(telco[1])
    return inference_log.read_window(service.ledger.engine)


def test_the_reference_passes_the_serving_code_and_has_the_log_columns(reference, telco):
    assert len(reference) == len(telco[0])
    assert list(reference.columns) == [c.name for c in inference_log.inference_log.columns]
    assert reference["dry_run"].all() and reference["churn_risk"].between(0, 1).all()
    assert reference["customer_key"].str.fullmatch(r"[0-9a-f]{64}").all()  # keyed hashes, never the ids
    assert not set(telco[0]["customerID"]) & set(reference["customer_key"])
    weekdays = pd.to_datetime(W.spread_local_times(1000, NOW, 7, 0)).dayofweek
    assert set(weekdays) == set(range(7))  # the calendar of the reference is spread over the week


# ----------------------------------------------------------------------------- the spec
def test_the_drift_spec_is_data_and_a_bad_one_names_the_key():
    spec = S.load_spec()
    assert {c.name for c in spec.columns} == set(inference_log.FEATURE_COLUMNS) | set(inference_log.PREDICTION_COLUMNS)
    assert [c.role for c in spec.columns][:19] == ["feature"] * 19
    good = {"drift_share": 0.5, "groups": [{"role": "feature", "kind": "numeric", "method": "wasserstein",
                                            "threshold": 0.2, "columns": ["tenure"]}]}
    assert S.parse_spec(good).columns[0].method == "wasserstein"
    bad = [({"groups": [{**good["groups"][0], "method": "hellinger"}]}, "groups[0].method"),
           ({"groups": [{**good["groups"][0], "columns": ["name"]}]}, "does not have"),
           ({"groups": [good["groups"][0], good["groups"][0]]}, "two groups"),
           ({"groups": [{**good["groups"][0], "role": "prediction"}]}, "role: feature"),
           ({"drift_share": 2}, "'drift_share'"), ({"typo": 1}, "unknown key")]
    for change, needle in bad:
        with pytest.raises(MonitoringError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            S.parse_spec({**good, **change})


def test_window_parsing():
    assert W.parse_window("7d") == timedelta(days=7) and W.parse_window(" 24h") == timedelta(hours=24)
    assert W.parse_window("ALL") is None and W.parse_window("2w") == timedelta(weeks=2)
    for bad in ("7", "0d", "seven days", "-1d"):
        with pytest.raises(MonitoringError, match="e.g. 24h, 7d"):
            W.parse_window(bad)


# ----------------------------------------------------------------------------- drift
def test_windows_from_the_same_population_do_not_alarm(reference, live):
    spec = S.load_spec()
    alarms, worst = 0, []
    for seed in range(10):
        window = live.sample(WINDOW_ROWS, random_state=seed)
        result = D.compute_drift(reference, window, spec, report=False)  # same scores, no widgets (see below)
        alarms += result.detected
        worst.append((result.columns[0].column, round(result.columns[0].severity, 2)))
    assert alarms <= 1, worst


SHIFTS = {
    "MonthlyCharges": lambda w: w.assign(MonthlyCharges=(w["MonthlyCharges"] * 1.3).round(2)),
    "Contract": lambda w: w.assign(Contract=np.where(np.random.default_rng(1).random(len(w)) < 0.5,
                                                     "Month-to-month", w["Contract"])),
    "tenure": lambda w: w.assign(tenure=w["tenure"] // 2),
    # a category the model never saw: the request validation logs it as missing, with a warning
    "PaymentMethod": lambda w: w.assign(PaymentMethod=np.where(np.random.default_rng(2).random(len(w)) < 0.25,
                                                               "Crypto wallet", w["PaymentMethod"])),
}


@pytest.mark.parametrize("column", list(SHIFTS))
def test_a_shifted_window_is_detected_and_the_shifted_column_comes_first(column, reference, telco, tmp_path):
    service = make_service(f"sqlite:///{tmp_path / 'prod.db'}")
    window = SHIFTS[column](requests(telco[1].sample(WINDOW_ROWS, random_state=7), seed=7))
    logged = score(service, window)
    result = D.compute_drift(reference, logged, S.load_spec())
    assert result.detected
    fast = D.compute_drift(reference, logged, S.load_spec(), report=False)
    assert [(c.column, c.score) for c in fast.columns] == [(c.column, c.score) for c in result.columns]
    first = result.columns[0]
    assert first.column == column and first.drifted and first.severity > 1
    assert [c.column for c in result.drifted][0] == column
    if column == "PaymentMethod":
        assert first.current["shares"]["(missing)"] > 0.15 and "(missing)" not in first.reference["shares"]


def test_an_empty_window_is_an_error_with_exit_code_2(tmp_path, reference):
    service = make_service(f"sqlite:///{tmp_path / 'prod.db'}")
    with pytest.raises(EmptyWindowError, match="widen the window") as err:
        W.current_window(service.ledger.engine, "7d", NOW)
    assert err.value.exit_code == 2
    with pytest.raises(EmptyWindowError):
        D.compute_drift(reference, reference.iloc[:0], S.load_spec())


def test_the_window_is_validated_with_great_expectations(live):
    from retention.errors import DataValidationError

    W.validate_window(live.head(50))
    broken = live.head(50).copy()
    broken.loc[3, "accept_2"] = 1.5
    broken.loc[4, "offer_level"] = 7
    with pytest.raises(DataValidationError) as err:
        W.validate_window(broken)
    failed = {(f["expectation"], f["column"]) for f in err.value.failures}
    assert ("expect_column_values_to_be_between", "accept_2") in failed
    assert ("expect_column_values_to_be_in_set", "offer_level") in failed
    with pytest.raises(DataValidationError, match="churn_risk"):
        W.validate_window(live.head(5).drop(columns=["churn_risk"]))


def test_decision_mix_and_calibration_are_plain_arithmetic():
    ref = pd.DataFrame({"contact": [True, True, False, False], "offer_level": [1, 3, 0, 0], "delay_days": [0] * 4})
    cur = pd.DataFrame({"contact": [True, True, True, False], "offer_level": [3, 3, 3, 0], "delay_days": [2] * 4})
    mix = D.decision_mix(ref, cur, max_change=0.1)
    assert mix.loc["contact_rate", "reference"] == 0.5 and mix.loc["contact_rate", "current"] == 0.75
    assert mix.loc["offer_15%", "current"] == 1.0 and mix.loc["offer_15%", "moved"]
    assert not mix.loc["mean_delay_days", "moved"]
    joined = pd.DataFrame({"contact": [True] * 4 + [False], "offer_level": [1] * 5,
                           "predicted_accept": [0.05, 0.15, 0.15, 0.95, 0.5], "churn_risk": [0.5] * 5,
                           "accepted": [False, True, False, True, True], "churned": [None] * 5})
    table, ece = D.calibration(joined, bins=10)
    assert table["count"].tolist() == [1, 2, 1]  # the uncontacted row does not count
    assert table["realised"].tolist() == [0.0, 0.5, 1.0]
    assert ece == pytest.approx((0.05 + 2 * 0.35 + 0.05) / 4)
    empty, none = D.calibration(joined.iloc[:0], bins=10)
    assert empty.empty and none is None


# ----------------------------------------------------------------------------- outcomes
TODAY = date.today().isoformat()


def _logged(tmp_path):
    """A ledger with real decisions: req-9 (7590-VHVEG, contacted), req-8 (6713-OKOMC, not contacted:
    the holdout, by its keyed hash), and 5575-GNVDE (contacted, no request id)."""
    service = make_service(f"sqlite:///{tmp_path / 'ledger.db'}")
    customers = pd.DataFrame([{**_customer(), "customer_id": "7590-VHVEG", "request_id": "req-9", "name": NAMES[0]},
                              {**_customer(), "customer_id": "5575-GNVDE", "name": NAMES[1]},
                              {**_customer(), "customer_id": HELD_OUT, "request_id": "req-8"}])
    log = score(service, customers.assign(dry_run=False), now=datetime.now(UTC).replace(microsecond=0))
    assert log["contact"].tolist() == [True, True, False] and log["assignment"].iloc[2] == "holdout"
    return service, log


HELD_OUT = next(f"H-{i}" for i in range(1000) if in_holdout([f"H-{i}"], load_config("smoke").serving.holdout_salt,
                                                               load_config("smoke").serving.holdout_share)[0])


def _outcome_rows(change: dict | None = None) -> pd.DataFrame:
    rows = [{"request_id": "req-9", "customer_id": "", "accepted": "true", "churned": "", "outcome_date": TODAY,
             "offer_level_accepted": "", "revenue": "215.5"},
            {"request_id": "", "customer_id": " 7590-vhveg", "accepted": "", "churned": "false",
             "outcome_date": TODAY, "offer_level_accepted": "", "revenue": ""},
            {"request_id": "", "customer_id": "5575-GNVDE", "accepted": "no", "churned": "yes", "outcome_date": TODAY,
             "offer_level_accepted": "", "revenue": ""},
            {"request_id": "req-8", "customer_id": "", "accepted": "", "churned": "1", "outcome_date": TODAY,
             "offer_level_accepted": "", "revenue": "0"}]
    for (i, key), value in (change or {}).items():
        rows[i][key] = value
    return pd.DataFrame(rows)


def test_bad_outcome_rows_are_rejected_field_by_field_and_the_others_are_written(tmp_path):
    service, _ = _logged(tmp_path)
    engine = service.ledger.engine
    bad = pd.concat([_outcome_rows({(1, "outcome_date"): "21/11/2026", (2, "customer_id"): "has space"}),
                     pd.DataFrame([
                         {"request_id": "req-404", "accepted": "true", "outcome_date": TODAY},  # unknown id
                         {"request_id": "req-9x", "customer_id": "NOBODY-1", "churned": "maybe",
                          "outcome_date": TODAY},  # a bad flag
                         {"customer_id": "NOBODY-2", "churned": "true", "outcome_date": TODAY},  # never decided
                         {"request_id": "req-9", "accepted": "false", "offer_level_accepted": "3",
                          "outcome_date": TODAY}])], ignore_index=True)
    report = record_outcomes(engine, bad)
    assert report.written == 2  # rows 0 (req-9, accepted) and 3 (req-8, churned)
    assert set(report.rejected) == {"rows[1].outcome_date", "rows[2].customer_id", "rows[4].request_id",
                                    "rows[5].churned", "rows[6].customer_id", "rows[7].offer_level_accepted",
                                    "rows[7].request_id"}
    assert report.rejected["rows[4].request_id"].startswith("no real decision was logged under this request id")
    assert report.rejected["rows[6].customer_id"].startswith("no real decision was logged for this customer")
    assert report.rejected_rows == 6
    no_offer = record_outcomes(engine, pd.DataFrame([{"request_id": "req-8", "accepted": "true",
                                                      "outcome_date": TODAY}]))  # the holdout: no contact made
    assert no_offer.written == 0 and no_offer.rejected["rows[0].accepted"].startswith("the decision made no contact")
    text = " ".join(report.rejected.values())
    assert "maybe" not in text and "has space" not in text and "NOBODY" not in text  # no value is echoed
    with engine.connect() as conn:
        stored = pd.read_sql(outcomes.select(), conn)
    assert sorted(stored["request_id"]) == ["req-8", "req-9"] and stored["revenue"].tolist().count(215.5) == 1
    with pytest.raises(RowsError, match="columns.outcome_date"):
        parse_outcomes(pd.DataFrame({"request_id": ["a"], "accepted": ["true"]}))
    rows, problems = parse_outcomes(pd.DataFrame({"request_id": ["a", "a"], "accepted": ["true", "false"],
                                                  "outcome_date": ["2026-11-20"] * 2}))
    assert len(rows) == 1 and problems["rows[1].request_id"].startswith("repeats rows[0]")
    _, problems = parse_outcomes(pd.DataFrame({"request_id": ["a", "b"], "churned": ["true", "false"],
                                               "churn_date": ["2999-01-01", "2026-11-01"],
                                               "outcome_date": ["2999-01-01", "2026-11-20"]}))
    assert "in the future" in problems["rows[0].outcome_date"] and "churned is not true" in problems[
        "rows[1].churn_date"]


def test_an_outcome_dated_before_its_decision_is_rejected(tmp_path):
    service, log = _logged(tmp_path)
    before = (log["logged_at"].iloc[0] - timedelta(days=3)).date().isoformat()
    report = record_outcomes(service.ledger.engine, pd.DataFrame([{"request_id": "req-9", "accepted": "true",
                                                                   "outcome_date": before}]))
    assert report.written == 0 and "before its decision" in report.rejected["rows[0].outcome_date"]


def test_outcomes_keep_keyed_hashes_only_join_the_log_and_can_be_sent_again(tmp_path):
    service, log = _logged(tmp_path)
    engine = service.ledger.engine
    key_a, key_b, _ = log["customer_key"]
    assert record_outcomes(engine, _outcome_rows()).written == 4
    assert record_outcomes(engine, _outcome_rows()).written == 4  # sent again: replaced, not added
    with engine.connect() as conn:
        stored = pd.read_sql(outcomes.select(), conn)
    assert len(stored) == 4
    text = stored.to_csv().upper()
    assert "7590-VHVEG" not in text and "5575-GNVDE" not in text and not any(n.upper() in text for n in NAMES)
    # the same keyed hash as the log: " 7590-vhveg" is normalised to the logged customer; req-9's key is
    # filled from its logged decision
    assert stored["customer_key"].tolist().count(key_a) == 2 and stored["customer_key"].tolist().count(key_b) == 1
    joined = join_outcomes(log, read_outcomes(engine))
    assert len(joined) == 4  # each by its request id, or by the customer's latest decision
    assert sorted(joined["churned"].tolist(), key=str) == [False, None, True, True]


def _customer() -> dict:
    return {"gender": "Female", "SeniorCitizen": 0, "Partner": "Yes", "Dependents": "No", "tenure": 2,
            "PhoneService": "No", "MultipleLines": "No phone service", "InternetService": "Fiber optic",
            "OnlineSecurity": "No", "OnlineBackup": "Yes", "DeviceProtection": "No", "TechSupport": "No",
            "StreamingTV": "No", "StreamingMovies": "No", "Contract": "Month-to-month", "PaperlessBilling": "Yes",
            "PaymentMethod": "Electronic check", "MonthlyCharges": 89.85, "TotalCharges": 179.7}


def test_the_outcomes_command_exits_with_the_input_error_code(tmp_path, capsys):
    from retention.cli import main

    service, _ = _logged(tmp_path)
    url = service.ledger.url
    path = tmp_path / "outcomes.csv"
    _outcome_rows({(2, "churned"): "perhaps"}).to_csv(path, index=False)
    assert main(["outcomes", "--input", str(path), "--ledger-url", url]) == 5
    captured = capsys.readouterr()
    assert "rows[2].churned: must be true or false" in captured.err and "Traceback" not in captured.err
    assert "recorded 3 outcome(s)" in captured.out and "the others were recorded" in captured.err
    _outcome_rows().to_csv(path, index=False)
    assert main(["outcomes", "--input", str(path), "--ledger-url", url]) == 0
    assert "recorded 4 outcome(s)" in capsys.readouterr().out
    pd.DataFrame({"request_id": ["req-9"], "accepted": ["true"]}).to_csv(path, index=False)
    assert main(["outcomes", "--input", str(path), "--ledger-url", url]) == 5  # a column missing: nothing
    assert "nothing was written" in capsys.readouterr().err
    assert main(["outcomes", "--input", str(path), "--ledger-url", f"sqlite:///{tmp_path / 'typo.db'}"]) == 2
    assert "no ledger database" in capsys.readouterr().err and not (tmp_path / "typo.db").exists()


# ----------------------------------------------------------------------------- the step
def test_the_drift_step_logs_reports_and_keeps_no_identifiers(tracking, telco, reference, monkeypatch, capsys):
    """Live traffic with names and messages goes through the service; the step's report, JSON,
    summary and outcomes table must hold none of the names, message texts or raw customer ids."""
    import mlflow

    import retention.serving.model as serving_model
    from retention.cli import main
    from retention.monitoring import steps as monitoring_steps

    url = f"sqlite:///{tracking / 'ledger.db'}"
    service = make_service(url)
    service.serving = dataclasses.replace(service.serving, trace_sampling=1.0)  # this request is traced
    now = datetime.now(UTC)
    traffic = SHIFTS["MonthlyCharges"](requests(telco[1].head(250), seed=3, with_message=True)).assign(
        name=[NAMES[i % 3] for i in range(250)], request_id=[f"req-{i}" for i in range(250)], dry_run=False)
    decided = service.decide(traffic, now=now)
    texts = [m for m in decided["message"] if isinstance(m, str)]
    assert texts and any(NAMES[0] in m for m in texts)  # the messages do carry names
    record_outcomes(service.ledger.engine, pd.DataFrame({"request_id": [f"req-{i}" for i in range(40)],
                                                         "customer_id": traffic["customer_id"].head(40),
                                                         "accepted": ["true", "false"] * 20,
                                                         "outcome_date": now.date().isoformat()}))
    monkeypatch.setattr(serving_model, "service_from_uri", lambda uri, **kw: make_service(url))
    monkeypatch.setattr(monitoring_steps, "reference_customers", lambda uri, cfg: telco[0])

    code = main(["--no-progress", "drift", "--profile", "smoke", "--window", "7d", "--ledger-url", url])
    out = capsys.readouterr().out
    assert code == 1  # MonthlyCharges +30%
    run = mlflow.search_runs(experiment_names=["retention-test"], output_format="list")[0]
    assert run.data.tags["drift.detected"] == "true" and run.data.tags["drift.drifted_columns"].startswith(
        "MonthlyCharges")
    assert run.data.metrics["drift/MonthlyCharges"] > 0.25 and "drift/share_drifted" in run.data.metrics
    # acceptance calibration counts the contacted decisions among the 40 (the holdout and "no contact"
    # arms drawn by exploration made no offer to accept)
    contacted = sum(bool(d["contact"]) for d in decided["decision"].head(40))
    assert 30 <= contacted < 40 and run.data.metrics["calibration/outcomes"] == contacted
    traced = mlflow.search_traces(locations=[run.info.experiment_id], return_type="list")
    assert len(traced) == 1  # the live request's trace; scoring the reference (5,600 rows) made none
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}  # both sides, as MLflow datasets
    assert set(inputs) == {"drift-reference", "inference-log-7d"}
    assert {t.value for d in inputs.values() for t in d.tags if t.key == "mlflow.data.context"} == {"reference",
                                                                                                  "current"}
    assert "customer_key" not in inputs["inference-log-7d"].dataset.schema  # the drift columns only
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "drift")}
    assert {"drift/report.html", "drift/evidently.json", "drift/result.json", "drift/decision_mix.json",
            "drift/calibration.json"} <= artifacts
    assert "plots/drift_scores.png" in {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "plots")}
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="drift")
    html = open(f"{local}/report.html", encoding="utf-8").read()
    result = json.loads(open(f"{local}/result.json").read())
    assert result["columns"][0]["column"] == "MonthlyCharges" and result["detected"]
    assert "MonthlyCharges" in out and "mean 6" in out and run.info.run_id in out and "mlflow run . -e main" in out
    assert (tracking / "monitoring" / "workspace").is_dir()
    with service.ledger.engine.connect() as conn:
        stored_outcomes = pd.read_sql(outcomes.select(), conn).to_csv()
    evidently_json = open(f"{local}/evidently.json").read()
    log_keys = set(inference_log.read_window(service.ledger.engine)["customer_key"])
    for blob in (html, evidently_json, json.dumps(result), out, stored_outcomes):
        assert not any(name in blob for name in NAMES)
        assert not any(t[:40] in blob for t in texts)
        assert not any(cid in blob for cid in traffic["customer_id"])
    for blob in (html, evidently_json, json.dumps(result), out):
        assert "req-1" not in blob and not any(k in blob for k in list(log_keys)[:50])

    # a window with nothing in it: exit code 2, a clear message, no traceback
    empty = f"sqlite:///{tracking / 'empty.db'}"
    ContactLedger(empty, _rules(load_config("smoke")))
    assert main(["drift", "--profile", "smoke", "--ledger-url", empty]) == 2
    err = capsys.readouterr().err
    assert "no decisions were logged" in err and "Traceback" not in err
    assert main(["drift", "--profile", "smoke", "--ledger-url", f"sqlite:///{tracking / 'nowhere.db'}"]) == 2
    assert "no ledger database" in capsys.readouterr().err


def test_the_fast_sqlite_log_insert_stores_exactly_what_sqlalchemy_core_stores():
    """``inference_log.write`` bypasses Core's per-row parameters on sqlite; the stored rows must not differ."""
    from datetime import UTC, datetime

    from sqlalchemy import create_engine, insert

    from retention.serving import inference_log as L
    from retention.serving.ledger import metadata

    features = {c: (1.5 if c in L.RISK_NUMERIC else "Yes") for c in L.FEATURE_COLUMNS}
    features["tenure"] = None  # a missing value
    row = {"logged_at": datetime(2026, 11, 25, 12, 30, 1, 250, tzinfo=UTC), "request_id": "r-1",
           "customer_key": "k" * 64, "bundle_run_id": None, "model_versions": '{"churn-risk": "3"}', "dry_run": True,
           "replayed": False, "churn_risk": 0.25, "contact": True, "offer_level": 2, "delay_days": 3,
           "message_source": "template", "shield_passed": False, "shield_violations": '{"missing_name": 1}',
           **features, **{f"accept_{k}": 0.1 * k for k in range(L.OFFERS)}}
    frames = []
    for fast in (False, True):
        engine = create_engine("sqlite://")
        metadata.create_all(engine)
        with engine.begin() as conn:
            L.write(conn, [row, {**row, "request_id": None}]) if fast else conn.execute(
                insert(L.inference_log), [row, {**row, "request_id": None}])
        frames.append(L.read_window(engine, start=datetime(2026, 11, 25, tzinfo=UTC)))
    assert len(frames[0]) == 2
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_main_pins_the_ledger_it_wrote_for_the_drift_step_it_launches(tmp_path, monkeypatch):
    """`drift` runs in the project folder under `mlflow run`: a relative sqlite path must not move with it."""
    from retention.monitoring.steps import pinned_ledger_url

    cfg = load_config("smoke")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RETENTION_LEDGER_URL", raising=False)
    assert pinned_ledger_url(cfg) == f"sqlite:///{tmp_path.resolve() / 'ledger.db'}"
    monkeypatch.setenv("RETENTION_LEDGER_URL", "postgresql://u:secret@db/ledger")
    assert pinned_ledger_url(cfg) == "none"  # inherited by the child; the password is not logged

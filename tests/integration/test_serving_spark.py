"""The Spark path: `mlflow.pyfunc.spark_udf` of the bundled model, on pyspark in local mode (2 cores)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import mlflow
import pandas as pd
import pytest

from retention.data.pipeline import load_split
from retention.messaging.sft_data import name_for
from retention.policy.guard import GuardRules
from retention.serving.ledger import ContactLedger
from retention.serving.signature import FLAT_COLUMNS
from retention.serving.spark import local_session, score_dataframe
from tests.integration.conftest import BUDGET, MODEL_URI, within

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spark():
    session = local_session(cores=2, app_name="retention-test")
    yield session
    session.stop()


def _customers(bundle, n: int) -> pd.DataFrame:
    test = load_split(bundle.home / "processed", "telco", "test").head(n)
    return test.assign(name=[name_for(c) for c in test["customerID"]]).drop(columns=["Churn"])


def test_spark_udf_decides_like_the_in_process_model(bundle, spark, tmp_path):
    customers = _customers(bundle, 24)
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"  # the same (empty) ledger state for both paths
    with within(bundle.home, {**bundle.env, "RETENTION_LEDGER_URL": ledger_url}):
        decided = score_dataframe(spark.createDataFrame(customers).repartition(2), MODEL_URI, ledger_url=ledger_url,
                                  dry_run=True)
        rows = decided.toPandas().sort_values("customer_id").reset_index(drop=True)
        service = mlflow.pyfunc.load_model(MODEL_URI).unwrap_python_model().service
    expected = service.decide(customers.rename(columns={"customerID": "customer_id"}).assign(dry_run=True))
    expected = expected.sort_values("customer_id").reset_index(drop=True)

    assert decided.columns[-len(FLAT_COLUMNS):] == list(FLAT_COLUMNS)  # inputs kept, then one column per field
    assert {"tenure", "Contract", "name", "dry_run"} <= set(decided.columns)
    assert rows["customer_id"].tolist() == expected["customer_id"].tolist()
    assert rows["contact"].tolist() == [d["contact"] for d in expected["decision"]]
    assert rows["offer_percentage"].tolist() == [d["offer_percentage"] for d in expected["decision"]]
    assert rows["churn_risk"].tolist() == pytest.approx([m["churn_risk"] for m in expected["metadata"]])
    assert rows["contact"].any(), "the greedy champion contacts some of the test customers"
    for _, r in rows[rows["contact"]].iterrows():
        assert r["message"] and r["message_source"] in ("generator", "template")
    assert all(isinstance(json.loads(w), list) for w in rows["warnings"])


def test_spark_partitions_share_the_ledger_budget_and_cooldown(bundle, spark, ledger_url):
    """Parametrised by the ``ledger_url`` fixture: a sqlite file, and a database on a real Postgres server."""
    customers = pd.concat([_customers(bundle, 60)] * 2, ignore_index=True)  # everyone twice, in both partitions
    with within(bundle.home, bundle.env):
        frame = spark.createDataFrame(customers).repartition(2)
        rows = score_dataframe(frame, MODEL_URI, ledger_url=ledger_url).toPandas()

    rules = GuardRules(bundle.cfg.env.fatigue_cap, bundle.cfg.env.cooldown_days, bundle.cfg.env.contact_cost)
    ledger = ContactLedger(ledger_url, rules, budget=BUDGET)
    summary = ledger.summary()
    contacted = rows.loc[rows["contact"], "customer_id"].tolist()
    assert contacted and summary["contacts"] == len(contacted)
    assert len(contacted) == len(set(contacted))  # the second copy of a customer is inside the cooldown
    assert summary["budget_spent"] <= BUDGET + 1e-9, summary
    states, _, remaining = ledger.states(sorted(set(customers["customerID"])), datetime.now(UTC))
    assert remaining >= 0 and all(s.fatigue_count <= 1 for s in states.values())


def test_score_spark_command_writes_decisions_and_names_bad_fields(bundle, spark, tmp_path, capsys):
    from retention.cli import main

    customers = _customers(bundle, 20)
    customers.to_parquet(tmp_path / "in.parquet")
    with within(bundle.home, bundle.env):
        code = main(["score_spark", "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out"),
                     "--dry-run", "--ledger-url", f"sqlite:///{tmp_path / 'ledger.db'}"])
        assert code == 0, capsys.readouterr().err
        written = pd.read_parquet(tmp_path / "out")
        assert sorted(written["customer_id"]) == sorted(customers["customerID"])
        assert f"20 customers -> {tmp_path / 'out'}" in capsys.readouterr().out

        customers.assign(tenure=[-5.0] + [1.0] * 19).to_parquet(tmp_path / "bad.parquet")
        code = main(["score_spark", "--input", str(tmp_path / "bad.parquet"), "--output", str(tmp_path / "bad"),
                     "--dry-run"])
        err = capsys.readouterr().err
        assert code == 5 and "tenure: must be between 0 and 1200" in err and "Traceback" not in err
        assert main(["score_spark", "--input", str(tmp_path / "missing.parquet"), "--output", str(tmp_path / "x")]) == 3

"""The scale-out stack on one machine, all real: `mlflow server` on Postgres with artifacts proxied to a GCS
bucket (gcp-storage-emulator), the smoke pipeline logging to it through to a `retention` champion, then
`mlflow models serve` of `models:/retention@champion` from that server, with a Postgres contact ledger."""

from __future__ import annotations

import json
import urllib.request

import pytest
from sqlalchemy import create_engine, text

from retention.cli import main as cli
from retention.cloud.stack import local_stack
from retention.policy.guard import GuardRules
from retention.serving.ledger import ContactLedger
from tests.integration.conftest import BUDGET, Bundle, build_bundle, start_server, stop_server, within

pytestmark = pytest.mark.integration
CUSTOMER = {"customer_id": "gcs-1", "name": "Maria", "gender": "Female", "SeniorCitizen": 0, "Partner": "Yes",
            "Dependents": "No", "tenure": 1, "PhoneService": "No", "MultipleLines": "No phone service",
            "InternetService": "Fiber optic", "OnlineSecurity": "No", "OnlineBackup": "Yes",
            "DeviceProtection": "No", "TechSupport": "No", "StreamingTV": "No", "StreamingMovies": "No",
            "Contract": "Month-to-month", "PaperlessBilling": "Yes", "PaymentMethod": "Electronic check",
            "MonthlyCharges": 95.0, "TotalCharges": 95.0}


@pytest.fixture(scope="module")
def stack(postgres, tmp_path_factory):
    with local_stack(postgres=postgres, log_dir=tmp_path_factory.mktemp("stack-logs")) as s:
        yield s


@pytest.fixture(scope="module")
def pipeline(stack, mirror, tmp_path_factory) -> Bundle:
    """The smoke pipeline, step by step, against the tracking server (the policy champion: the greedy rule)."""
    home = tmp_path_factory.mktemp("server-home")
    env = {"MLFLOW_TRACKING_URI": stack.tracking_uri, "MLFLOW_EXPERIMENT_NAME": "retention-at-scale"}
    return build_bundle(home, env, mirror, "tracking-server")


def _scalar(url: str, sql: str, **params):
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def test_runs_metrics_inputs_and_registry_land_in_postgres(stack, pipeline):
    db = stack.backend_store_uri
    exp = _scalar(db, "select experiment_id from experiments where name = :n", n="retention-at-scale")
    assert exp is not None
    finished = _scalar(db, "select count(*) from runs where experiment_id = :e and status = 'FINISHED'", e=exp)
    assert finished >= 6  # data, train_risk, train_accept, promote, sft, bundle (+ the policy's log run)
    # one per tabular run (mlflow.models.evaluate also records it linked to the dataset and logged model)
    assert _scalar(db, "select count(distinct run_uuid) from metrics where key = 'test_roc_auc'") == 2
    assert _scalar(db, "select count(*) from inputs where destination_type = 'RUN'") >= 3  # dataset inputs
    assert _scalar(db, "select count(*) from datasets") >= 3
    assert _scalar(db, "select artifact_location from experiments where experiment_id = :e", e=exp).startswith(
        "mlflow-artifacts:")  # proxied: clients never talk to GCS themselves
    champion = _scalar(db, "select version from registered_model_aliases where name = 'retention' "
                       "and alias = 'champion'")
    assert champion is not None
    # the stage mirror went through the server too
    assert _scalar(db, "select current_stage from model_versions where name = 'retention' and version = :v",
                   v=champion) == "Production"


def test_artifacts_land_in_the_emulated_bucket(stack, pipeline, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", stack.storage_emulator_host)
    bucket, _, prefix = stack.artifacts_destination.removeprefix("gs://").partition("/")
    names = [b.name for b in storage.Client(project="local", credentials=AnonymousCredentials())
             .list_blobs(bucket, prefix=prefix)]
    assert any(n.endswith("/gx/telco_raw.json") for n in names), names[:20]  # a data-run artifact
    models = [n for n in names if n.endswith("/MLmodel")]
    assert len(models) >= 5, models  # churn-risk, offer-accept, message-generator, policy, retention


def test_registry_status_agrees_with_the_aliases_on_the_server(pipeline, capsys):
    with within(pipeline.home, pipeline.env):
        assert cli(["registry", "status"]) == 0
    out = capsys.readouterr().out
    assert "aliases and stages agree" in out
    row = next(r for r in out.splitlines() if r.startswith("retention ") and "champion" in r)
    assert "Production" in row


def test_the_champion_is_served_from_the_server_with_a_postgres_ledger(stack, pipeline, postgres):
    ledger_url = postgres.create_database("served_ledger")
    port, proc = start_server(pipeline, ledger_url)
    try:
        body = json.dumps({"dataframe_records": [CUSTOMER]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - loopback only
            assert resp.status == 200
            row = json.loads(resp.read())["predictions"][0]
    finally:
        stop_server(proc)
    assert row["customer_id"] == "GCS-1" and row["decision"]["contact"], row
    assert row["message"] and row["message_source"] in ("generator", "template")
    cfg = pipeline.cfg
    ledger = ContactLedger(ledger_url, GuardRules(cfg.env.fatigue_cap, cfg.env.cooldown_days, cfg.env.contact_cost),
                           budget=BUDGET)
    assert ledger.summary()["contacts"] == 1  # booked in Postgres by the served model

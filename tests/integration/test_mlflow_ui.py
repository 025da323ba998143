"""What a practitioner sees in MLflow after a smoke pipeline: model cards, lineage, schemas, traces.

Uses the shared smoke ``bundle`` fixture (data, train_risk, train_accept, promote, sft, bundle): no
pipeline of its own.
"""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow.models import Model
from mlflow.tracking import MlflowClient
from mlflow.utils import mlflow_tags

from retention.model_cards import logged_model_id
from retention.tracking import NOTE
from tests.integration.conftest import MODEL_URI, within

pytestmark = pytest.mark.integration

CONSUMERS = {"train_risk": {"telco-train", "telco-valid", "telco-test"},
             "train_accept": {"bank-train", "bank-valid", "bank-test"},
             "sft": {"telco-train", "telco-test", "oasst_sft-train"},
             "bundle": {"telco-train", "telco-test"}}


def _runs(client: MlflowClient) -> dict[str, mlflow.entities.Run]:
    exp = client.get_experiment_by_name("serve-test")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    out: dict[str, mlflow.entities.Run] = {}
    for r in runs:
        out.setdefault(r.data.tags.get(mlflow_tags.MLFLOW_PROJECT_ENTRY_POINT, ""), r)
    return out


def test_runs_are_named_described_and_read_the_data_runs_splits(bundle):
    with within(bundle.home, bundle.env):
        client = MlflowClient()
        runs = _runs(client)
        exp = client.get_experiment_by_name("serve-test")
        assert "main" in exp.tags[NOTE]  # the experiment's description says where to look
        for step, wanted in CONSUMERS.items():
            run = runs[step]
            assert run.info.run_name == step and run.data.tags[NOTE]
            names = {d.dataset.name for d in run.inputs.dataset_inputs}
            assert wanted <= names, (step, names)
            digests = {d.dataset.name: d.dataset.digest for d in runs["data"].inputs.dataset_inputs}
            assert all(d.dataset.digest == digests[d.dataset.name] for d in run.inputs.dataset_inputs
                       if d.dataset.name in digests)  # the very datasets the data run logged
        # the generator's held-out metrics name both the test dataset and the logged model
        (gen,) = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list",
                                             filter_string=f"source_run_id = '{runs['sft'].info.run_id}'")
        linked = {m.key: m for m in gen.metrics}
        assert linked["sft/shield_pass_rate"].dataset_name == "telco-test"
        assert linked["sft/shield_pass_rate"].value == runs["sft"].data.metrics["sft/shield_pass_rate"]


def test_model_cards_carry_the_logged_metrics_and_the_verdict(bundle):
    with within(bundle.home, bundle.env):
        client = MlflowClient()
        for name in ("churn-risk", "offer-accept", "message-generator", "retention"):
            assert client.get_registered_model(name).description
        risk = client.get_model_version_by_alias("churn-risk", "champion")
        metrics = client.get_run(risk.run_id).data.metrics
        card = client.get_model_version("churn-risk", risk.version).description
        assert f"{metrics['test_roc_auc']:.4f}" in card and f"{metrics['test_ece']:.4f}" in card
        assert client.get_logged_model(logged_model_id(risk)).tags[NOTE] == card  # the logged model's page too
        assert "promoted" in card
        accept = client.get_model_version_by_alias("offer-accept", "champion")
        assert "Euribor" in client.get_model_version("offer-accept", accept.version).description
        gen = client.search_model_versions("name='message-generator'")[0]
        gen_card = client.get_model_version("message-generator", gen.version).description
        gen_metrics = client.get_run(gen.run_id).data.metrics
        assert f"{gen_metrics['sft/shield_pass_rate']:.4f}" in gen_card
        assert gen.tags["gate.verdict"] in gen_card
        served = client.get_model_version_by_alias("retention", "champion")
        assert "churn-risk" in client.get_model_version("retention", served.version).description


def test_the_composite_declares_its_outputs_and_traces_a_decision(bundle, tmp_path):
    with within(bundle.home, {**bundle.env, "RETENTION_LEDGER_URL": f"sqlite:///{tmp_path / 'l.db'}"}):
        local = mlflow.artifacts.download_artifacts(MODEL_URI)
        signature = Model.load(local).signature
        assert {"customer_id", "decision", "safety", "metadata"} <= set(signature.outputs.input_names())
        assert {"customer_id", "Contract", "payment_method"} <= set(signature.inputs.input_names())
        model = mlflow.pyfunc.load_model(MODEL_URI, model_config={"trace_sampling": 1.0})  # default: a tenth
        exp_id = MlflowClient().get_experiment_by_name("serve-test").experiment_id
        before = len(mlflow.search_traces(locations=[exp_id], return_type="list"))
        record = {"customer_id": "trace-1", "name": "Ana", "tenure": 2, "MonthlyCharges": 90.0,
                  "Contract": "Month-to-month", "InternetService": "Fiber optic", "dry_run": True}
        out = model.predict(pd.DataFrame([record]))
        mlflow.flush_trace_async_logging()
        traces = mlflow.search_traces(locations=[exp_id], return_type="list", order_by=["timestamp_ms DESC"])
        assert len(traces) == before + 1
        spans = {s.name: s for s in traces[0].data.spans}
        assert spans["decide"].attributes["records"] == 1
        assert spans["decide"].inputs == {"records": 1}  # the Traces table's Request column: counts only
        assert set(spans["decide"].outputs) == {"contacts", "offers", "message_sources"}
        if out["decision"][0]["contact"]:
            assert "shield" in spans
        decision = spans["decision"].attributes  # one span per decision, keyed by the customer's hash
        assert len(decision["customer_key"]) == 64 and decision["contact"] == bool(out["decision"][0]["contact"])
        assert traces[0].info.tags["retention.customer_key"] == decision["customer_key"]
        # no customer data in a trace
        assert "trace-1" not in traces[0].to_json() and "Ana" not in traces[0].to_json()
        off = mlflow.pyfunc.load_model(MODEL_URI, model_config={"tracing": False})
        off.predict(pd.DataFrame([{**record, "customer_id": "trace-2"}]))
        mlflow.flush_trace_async_logging()
        assert len(mlflow.search_traces(locations=[exp_id], return_type="list")) == before + 1

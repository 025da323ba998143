"""train_risk / train_accept / promote on the real data, in a throwaway MLflow registry."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from retention.config import load_config
from retention.data.pipeline import load_split
from retention.data.steps import data as data_step
from retention.tabular import steps
from retention.tabular.train import RISK

pytestmark = pytest.mark.integration


@pytest.fixture
def trained(tracking, mirror):
    overrides = {"data.mirror_dir": str(mirror), "data.processed_dir": str(tracking / "processed"),
                 "data.cache_dir": str(tracking / "cache"), "data.allow_download": False}
    cfg = load_config("cpu", overrides)
    data_run = data_step(cfg, {"profile": "cpu"}, progress=False)
    risk_run = steps.train_risk(cfg, {"profile": "cpu", "data_run_id": data_run})
    accept_run = steps.train_accept(cfg, {"profile": "cpu", "data_run_id": data_run})
    steps.promote(cfg, {"profile": "cpu", "risk_run_id": risk_run, "accept_run_id": accept_run})
    return cfg, data_run, risk_run, accept_run


def test_models_are_registered_gated_and_servable(trained):
    cfg, _, risk_run, accept_run = trained
    client = MlflowClient()
    for name, run_id in (("churn-risk", risk_run), ("offer-accept", accept_run)):
        (version,) = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
        tags = version.tags
        metrics = client.get_run(run_id).data.metrics
        assert tags["gate.test_roc_auc"] == f"{metrics['test_roc_auc']:.4f}"
        expected_alias = "champion" if tags["gate.verdict"] == "promoted" else "challenger"
        assert client.get_model_version_by_alias(name, expected_alias).version == version.version
        for metric in ("roc_auc", "pr_auc", "ece", "brier", "log_loss"):
            for variant in ("raw", "logreg"):
                assert f"test_{variant}/{metric}" in metrics
        for metric in ("roc_auc", "precision_recall_auc", "ece", "brier", "log_loss", "roc_auc_ci_low", "ece_ci_high"):
            assert f"test_{metric}" in metrics  # the registered model, from mlflow.models.evaluate
        arts = {a.path for a in client.list_artifacts(run_id, "plots")}
        assert arts == {f"plots/{p}.png" for p in ("reliability", "roc", "pr", "feature_importance")}
        # the model card: written by the step that registered the version, rewritten by the gate
        card = client.get_model_version(name, version.version).description
        assert f"{metrics['test_roc_auc']:.4f}" in card and f"{metrics['test_ece']:.4f}" in card
        assert tags["gate.verdict"] in card and tags["gate.reasons"] in card
        assert client.get_registered_model(name).description
        # lineage: the run read the data run's splits, and its test metrics name the test dataset and the model
        run = client.get_run(run_id)
        dataset = "telco" if name == "churn-risk" else "bank"
        assert {(d.dataset.name, d.tags[0].value) for d in run.inputs.dataset_inputs} >= {
            (f"{dataset}-{s}", s) for s in ("train", "valid", "test")}
        (model,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list",
                                               filter_string=f"source_run_id = '{run_id}'")
        assert model.name == ("churn_risk" if name == "churn-risk" else "offer_acceptance")
        linked = {m.key: m for m in model.metrics}
        assert linked["test_roc_auc"].dataset_name == f"{dataset}-test"
        assert linked["test_roc_auc"].value == pytest.approx(metrics["test_roc_auc"])
        # ...and every test metric is one point in the run's history, not two (evaluate re-logs by default)
        for key in ("test_roc_auc", "test_ece", "test_log_loss"):
            assert len(client.get_metric_history(run_id, key)) == 1, key
    # The real models clear the gate's thresholds on the real data.
    assert client.get_model_version_by_alias("churn-risk", "champion")
    test = load_split(cfg.data.processed_dir, "telco", "test")
    served = mlflow.pyfunc.load_model("models:/churn-risk@champion")
    proba = np.asarray(served.predict(test[list(RISK.features)].head(20)))
    assert proba.shape == (20, 2) and np.allclose(proba.sum(axis=1), 1.0)


def test_a_worse_candidate_is_not_promoted(trained):
    cfg, data_run, risk_run, _ = trained
    client = MlflowClient()
    champion = client.get_model_version_by_alias("churn-risk", "champion")
    weak = load_config("cpu", {**{f"data.{k}": getattr(cfg.data, k) for k in ("mirror_dir", "processed_dir")},
                               "risk.n_estimators": 3, "risk.max_depth": 1, "risk.learning_rate": 0.01,
                               "risk.calibration_frac": 0.05})
    weak_run = steps.train_risk(weak, {"profile": "cpu", "data_run_id": data_run})
    steps.promote(weak, {"profile": "cpu", "risk_run_id": weak_run, "accept_run_id": "none"})
    (candidate,) = client.search_model_versions(f"name='churn-risk' and run_id='{weak_run}'")
    assert client.get_model_version_by_alias("churn-risk", "champion").version == champion.version
    assert client.get_model_version_by_alias("churn-risk", "challenger").version == candidate.version
    assert candidate.tags["gate.verdict"] == "rejected"
    assert "champion" in candidate.tags["gate.reasons"] or "required" in candidate.tags["gate.reasons"]

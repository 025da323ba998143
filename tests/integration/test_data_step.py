"""The data step on the real mirror, logged to a throwaway MLflow store; main's step reuse."""

from __future__ import annotations

import json
import shutil

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from retention import pipeline
from retention.config import load_config
from retention.data import steps
from retention.errors import DataValidationError

pytestmark = pytest.mark.integration


def _cfg(tmp_path, mirror, **extra):
    return load_config("smoke", {"data.mirror_dir": str(mirror), "data.cache_dir": str(tmp_path / "cache"),
                                 "data.processed_dir": str(tmp_path / "processed"), "data.allow_download": False,
                                 **extra})


def test_data_run_logs_inputs_gx_and_manifest(tracking, mirror):
    cfg = _cfg(tracking, mirror)
    run_id = steps.data(cfg, {"profile": "smoke"}, progress=False)
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    names = {(i.dataset.name, i.tags[0].value) for i in run.inputs.dataset_inputs}
    assert ("telco-train", "train") in names and ("bank-test", "test") in names and len(names) == 15
    assert run.data.tags["gx.verdict"] == "passed"
    arts = {f.path for f in MlflowClient().list_artifacts(run_id, "gx")}
    assert {"gx/telco_raw.json", "gx/bank_raw.json", "gx/telco_processed.json"} <= arts
    manifest = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/data/manifest.json")
    assert manifest["datasets"]["telco"]["test"]["rows"] == run.data.metrics["rows/telco_test"]
    assert run.info.artifact_uri.startswith((tracking / "mlartifacts").as_uri())


def test_failed_validation_marks_run_failed_and_logs_result(tracking, mirror, raw_dir):
    path = raw_dir / "telco" / "WA_Fn-UseC_-Telco-Customer-Churn.csv"
    path.write_text(path.read_text().replace(",Yes\n", ",Perhaps\n", 1))
    cfg = _cfg(tracking, mirror, **{"data.data_dir": str(raw_dir)})
    with pytest.raises(DataValidationError, match="Perhaps"):
        steps.data(cfg, {"profile": "smoke"}, progress=False)
    run = MlflowClient().search_runs([mlflow.get_experiment_by_name("retention-test").experiment_id])[0]
    assert run.info.status == "FAILED"
    assert run.data.tags["gx.telco_raw"] == "failed"
    text = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/gx/failure.txt")
    assert "column 'Churn'" in text
    assert not (tracking / "processed").exists()


def test_main_reuses_a_finished_step_and_reruns_when_outputs_vanish(tracking, mirror, monkeypatch, capsys):
    """main launches `data` through mlflow.projects.run, as `mlflow run . -e main` does."""
    # The step runs with the project folder as cwd (as under `mlflow run`): point its outputs here.
    monkeypatch.setenv("RETENTION_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("RETENTION_PROCESSED_DIR", str(tracking / "data" / "processed"))
    monkeypatch.setenv("RETENTION_CACHE_DIR", str(tracking / "data" / "raw"))
    cfg = load_config("smoke")
    params = {"profile": "smoke", "data_dir": "none", "allow_download": "false"}
    pipeline.main(cfg, params)
    out = capsys.readouterr().out
    for step in ("data", "train_risk", "train_accept", "promote", "train_policy", "evaluate_policy"):
        assert f"launching '{step}'" in out
    # the whole chain ran: a policy champion was chosen among PPO and the baselines, comparison recorded
    champion = MlflowClient().get_model_version_by_alias("retention-policy", "champion")
    # its tag is one readable line (its own row); the whole comparison is the evaluation run's table
    line = champion.tags["gate.comparison"]
    assert line.startswith("net revenue ") and "; 0 violations" in line and "{" not in line
    evaluations = mlflow.search_runs(experiment_names=["retention-test"], output_format="list",
                                     filter_string="tags.`mlflow.runName` = 'evaluate_policy'")
    run = evaluations[0]
    assert champion.tags["gate.comparison_table"] == f"runs:/{run.info.run_id}/evaluation/comparison.json"
    table = json.loads(mlflow.artifacts.load_text(champion.tags["gate.comparison_table"]))
    assert {"ppo", "never_contact", "greedy_ev", "knapsack", "index", "index_resolve", "lagrangian_bound",
            "lp_bound"} <= {row[0] for row in table["data"]}
    # the evaluation run logs a handful of metrics, not one chart per figure
    own = [m for m in run.data.metrics if not m.startswith("system/")]
    assert "paired_diff" in table["columns"] and len(own) <= 10, own
    # train_policy: with every rule masked the multipliers stay 0, so no flat curve is logged; the run says why
    (trained,) = mlflow.search_runs(experiment_names=["retention-test"], output_format="list",
                                    filter_string="tags.`mlflow.runName` = 'train_policy'")
    curves = ("train/lambda_", "train/episode_cost_", "constraint/")
    assert not [m for m in trained.data.metrics if m.startswith(curves)]
    assert trained.data.tags["constraint.multipliers"].startswith("flat at 0")
    assert "guard masks every action" in trained.data.tags["mlflow.note.content"]
    pipeline.main(cfg, params)
    out = capsys.readouterr().out
    assert "reusing finished 'data'" in out and "reusing finished 'evaluate_policy'" in out
    shutil.rmtree(tracking / "data" / "processed" / "telco")
    # Only `data` is at stake now: stop main when it asks for the next step. (With a new data run id
    # every later step would re-run: a second full chain, minutes on a slow CPU, that tests nothing new.)
    real_run_step = pipeline.run_step

    class NextStep(Exception):
        pass

    def run_data_only(entry_point, *args, **kwargs):
        if entry_point != "data":
            raise NextStep(entry_point)
        return real_run_step(entry_point, *args, **kwargs)

    monkeypatch.setattr(pipeline, "run_step", run_data_only)
    with pytest.raises(NextStep, match="train_risk"):
        pipeline.main(cfg, params)
    out = capsys.readouterr().out
    assert "outputs changed: re-running" in out and (tracking / "data/processed/telco/test.parquet").is_file()

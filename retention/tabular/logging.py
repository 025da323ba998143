"""Logging a trained tabular model to MLflow: params, metrics, plots and the registered model."""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.models import infer_signature

import retention
from retention.tabular import plots
from retention.tabular.metrics import bootstrap_ci, expected_calibration_error
from retention.tabular.train import TrainResult
from retention.tracking import pip_requirements

PACKAGE_DIR = str(Path(retention.__file__).resolve().parent)
# Models are saved with skops (no arbitrary code on load); these are the non-sklearn-core types
# our calibrated pipeline is made of, declared trusted explicitly.
SKOPS_TRUSTED_TYPES = [
    "retention.tabular.calibration.InterpolatedIsotonicCalibrator",
    "retention.tabular.features.TabularFeatures",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
]


LOGGED_MODEL_NAMES = {"churn-risk": "churn_risk", "offer-accept": "offer_acceptance"}
LABEL = "label"


def ece_metric(scores: pd.Series, n_bins: int):
    """ECE as an ``mlflow.models.evaluate`` extra metric (``test_ece``).

    MLflow's classifier evaluator has no calibration error; the gate needs the project's ECE
    (``n_bins`` equal-width bins, :func:`retention.tabular.metrics.expected_calibration_error`).
    MLflow hands custom metrics the predicted *labels*, not probabilities, so ``scores`` (the model's
    P(positive), indexed like the evaluation data) are looked up by the targets' index.
    """
    from mlflow.metrics import MetricValue, make_metric

    def eval_fn(targets):
        p = scores.loc[targets.index]
        return MetricValue(aggregate_results={"ece": expected_calibration_error(targets, p, n_bins)})

    return make_metric(eval_fn=eval_fn, greater_is_better=False, name="ece")


def brier_metric(scores: pd.Series):
    """The Brier score, which MLflow's classifier evaluator does not compute (``test_brier``)."""
    from mlflow.metrics import MetricValue, make_metric

    def eval_fn(targets):
        p = scores.loc[targets.index].to_numpy()
        return MetricValue(aggregate_results={"brier": float(np.mean((p - np.asarray(targets)) ** 2))})

    return make_metric(eval_fn=eval_fn, greater_is_better=False, name="brier")


def log_training(result: TrainResult, X_example: pd.DataFrame, ece_bins: int,
                 test_dataset: mlflow.data.dataset.Dataset | None = None,
                 metadata: dict | None = None) -> mlflow.models.model.ModelInfo:
    """Log everything about ``result`` to the active run and register the model version.

    ``metadata`` goes into the logged model's MLmodel file and travels with every version (the
    acceptance model's training calendar, :func:`~retention.tabular.features.calendar_distribution`).

    Metric names are grouped by prefix, which is how MLflow's UI groups its charts: ``test_raw/`` and
    ``test_logreg/`` hold the uncalibrated model and the baseline, ``valid/`` the calibrated model on
    the valid split. The registered (calibrated) model's test metrics come from
    ``mlflow.models.evaluate`` as ``test_<metric>`` (linked to the logged model and the test dataset;
    MLflow 3.17's evaluator mangles a ``/`` in ``metric_prefix`` into ``test/roc_auc/test/roc_auc``
    and fails to save its plots, so its prefix is ``test_``). ``test_dataset`` names the split the
    test rows came from (lineage); without it the rows are logged as a dataset of their own.
    """
    spec = result.spec
    mlflow.log_params({f"xgb.{k}": v for k, v in result.params.items()})
    mlflow.log_params({"best_iteration": result.best_iteration, "ece_bins": ece_bins,
                       "calibration_chosen": result.calibration,
                       **{f"rows_{k}": v for k, v in result.rows.items()}})
    for variant in ("raw", "logreg"):
        mlflow.log_metrics({f"test_{variant}/{k}": v for k, v in result.metrics[variant].items()})
    mlflow.log_metrics({f"valid/{k}": v for k, v in result.valid_metrics.items()})
    if result.calibration_valid_ece:  # the calibrators compared on the valid split (calibration = auto)
        mlflow.log_table(pd.DataFrame({"calibrator": list(result.calibration_valid_ece),
                                       "valid_ece": list(result.calibration_valid_ece.values()),
                                       "chosen": [m == result.calibration for m in result.calibration_valid_ece]}),
                         "metrics/calibrators.json")
    mlflow.log_metric("train_seconds", result.seconds)
    table = pd.DataFrame(result.metrics).T.rename_axis("model").reset_index()
    mlflow.log_table(table, "metrics/test_metrics.json")

    title = spec.registered_name
    aucs = {k: m["roc_auc"] for k, m in result.metrics.items()}
    aps = {k: m["pr_auc"] for k, m in result.metrics.items()}
    eces = {k: m["ece"] for k, m in result.metrics.items()}
    for fig, name in (
        (plots.reliability_figure(result.y_test, result.test_predictions, ece_bins, title, eces), "reliability.png"),
        (plots.roc_figure(result.y_test, result.test_predictions, aucs, title), "roc.png"),
        (plots.pr_figure(result.y_test, result.test_predictions, aps, title), "pr.png"),
        (plots.importance_figure(result.importance, title), "feature_importance.png"),
    ):
        mlflow.log_figure(fig, f"plots/{name}")
        plt.close(fig)

    # The signature keeps the data's own dtypes (integer tenure, float charges): MLflow will not
    # up-cast int64 to float64 at serving time, and clients naturally send integers here.
    X_sig = X_example
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(X_sig, result.model.predict_proba(X_sig))
        info = mlflow.sklearn.log_model(
            sk_model=result.model,
            name=LOGGED_MODEL_NAMES.get(spec.registered_name, "model"),
            signature=signature,
            input_example=X_sig.head(5),
            pip_requirements=pip_requirements(["mlflow", "xgboost", "scikit-learn", "pandas", "numpy"]),
            code_paths=[PACKAGE_DIR],
            registered_model_name=spec.registered_name,
            pyfunc_predict_fn="predict_proba",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            metadata=metadata,
        )
    evaluate_classifier(info, X_example, result.y_test, result.test_predictions["calibrated"], ece_bins,
                        test_dataset)
    cal = result.test_predictions["calibrated"]
    for metric in ("roc_auc", "ece"):
        lo, hi = bootstrap_ci(result.y_test, cal, metric, n_bins=ece_bins)
        mlflow.log_metrics({f"test_{metric}_ci_low": lo, f"test_{metric}_ci_high": hi}, model_id=info.model_id)
    mlflow.set_tag("registered_model", f"{spec.registered_name}/{info.registered_model_version}")
    return info


def evaluate_classifier(info: mlflow.models.model.ModelInfo, X_test: pd.DataFrame, y_test: np.ndarray,
                        scores: np.ndarray, ece_bins: int, test_dataset: mlflow.data.dataset.Dataset | None = None):
    """``mlflow.models.evaluate(model_type="classifier")`` of the logged model on the test rows.

    Logs ``test_roc_auc``, ``test_precision_recall_auc``, ``test_log_loss``, the threshold metrics,
    ``test_ece`` and ``test_brier`` to the run *and* the logged model, with the test dataset, plus
    MLflow's ROC, PR, lift, calibration and confusion-matrix plots (``test_*.png`` artifacts). ``scores``
    are the model's P(positive) on ``X_test`` (for ECE and Brier, see :func:`ece_metric`).
    """
    frame = X_test.reset_index(drop=True).assign(**{LABEL: np.asarray(y_test, dtype=int)})
    p = pd.Series(np.asarray(scores, dtype=float), index=frame.index)
    # The evaluator logs INFO lines per call and warns that integer labels look like "model type None"
    # (it then infers binary correctly, as logged at INFO): nothing a user can act on.
    # It also announces the "active model" it sets for the call, two lines more.
    quiet = [logging.getLogger(n) for n in ("mlflow.models.evaluation", "mlflow.tracking.fluent")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        kw = {"name": test_dataset.name, "digest": test_dataset.digest,
              "source": test_dataset.source} if test_dataset is not None else {"name": "test"}
        data = mlflow.data.from_pandas(frame, targets=LABEL, **kw)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # A local copy, not ``info.model_uri``: given a ``models:/`` URI, MLflow 3.17's evaluate logs
            # every metric twice (its evaluator, then again with ``model_id``; evaluation/base.py),
            # so each ``test_*`` chart would hold two points at step 0. The metrics are linked to the
            # logged model once, below.
            local = mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=tmp)
            result = mlflow.models.evaluate(
                local, data, model_type="classifier",
                evaluator_config={"log_model_explainability": False, "metric_prefix": "test_", "pos_label": 1,
                                  "label_list": [0, 1]},
                extra_metrics=[ece_metric(p, ece_bins), brier_metric(p)],
            )
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
    link_metrics_to_model(mlflow.active_run().info.run_id, info.model_id, sorted(result.metrics), data)
    return result


def link_metrics_to_model(run_id: str, model_id: str, keys: list[str], dataset) -> None:
    """Link a run's already-logged step-0 metrics to ``model_id`` and ``dataset`` without a second point.

    Each metric is logged again with its original timestamp, step and value: the tracking store
    keeps one row per (key, timestamp, step, value) in the run's history and records the link to
    the logged model, so the run's charts keep one point per metric.
    """
    client = mlflow.MlflowClient()
    linked = []
    for key in keys:
        for m in client.get_metric_history(run_id, key):
            linked.append(Metric(key=key, value=m.value, timestamp=m.timestamp, step=m.step, model_id=model_id,
                                 dataset_name=dataset.name, dataset_digest=dataset.digest, run_id=run_id))
    for start in range(0, len(linked), 1000):
        client.log_batch(run_id, metrics=linked[start:start + 1000])

"""Logging a trained tabular model to MLflow: params, metrics, plots and the registered model."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import pandas as pd
from mlflow.models import infer_signature

import retention
from retention.tabular import plots
from retention.tabular.metrics import bootstrap_ci
from retention.tabular.train import TrainResult
from retention.tracking import pip_requirements

PACKAGE_DIR = str(Path(retention.__file__).resolve().parent)
# Models are saved with skops (no arbitrary code on load); these are the non-sklearn-core types
# our calibrated pipeline is made of, declared trusted explicitly.
SKOPS_TRUSTED_TYPES = [
    "retention.tabular.calibration.InterpolatedIsotonicCalibrator",
    "retention.tabular.features.TabularFeatures",
    "sklearn.calibration._CalibratedClassifier",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
]


def log_training(result: TrainResult, X_example: pd.DataFrame, ece_bins: int) -> mlflow.models.model.ModelInfo:
    """Log everything about ``result`` to the active run and register the model version."""
    spec = result.spec
    mlflow.log_params({f"xgb.{k}": v for k, v in result.params.items()})
    mlflow.log_params({"best_iteration": result.best_iteration, "ece_bins": ece_bins,
                       **{f"rows_{k}": v for k, v in result.rows.items()}})
    for variant, metrics in result.metrics.items():
        mlflow.log_metrics({f"test_{variant}_{k}": v for k, v in metrics.items()})
    mlflow.log_metrics({f"valid_calibrated_{k}": v for k, v in result.valid_metrics.items()})
    cal = result.test_predictions["calibrated"]
    for metric in ("roc_auc", "ece"):
        lo, hi = bootstrap_ci(result.y_test, cal, metric, n_bins=ece_bins)
        mlflow.log_metrics({f"test_calibrated_{metric}_ci_low": lo, f"test_calibrated_{metric}_ci_high": hi})
    mlflow.log_metric("train_seconds", result.seconds)
    table = pd.DataFrame(result.metrics).T.rename_axis("model").reset_index()
    mlflow.log_table(table, "metrics/test_metrics.json")

    title = spec.registered_name
    aucs = {k: m["roc_auc"] for k, m in result.metrics.items()}
    aps = {k: m["pr_auc"] for k, m in result.metrics.items()}
    for fig, name in (
        (plots.reliability_figure(result.y_test, result.test_predictions, ece_bins, title), "reliability.png"),
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
            name="model",
            signature=signature,
            input_example=X_sig.head(5),
            pip_requirements=pip_requirements(["mlflow", "xgboost", "scikit-learn", "pandas", "numpy"]),
            code_paths=[PACKAGE_DIR],
            registered_model_name=spec.registered_name,
            pyfunc_predict_fn="predict_proba",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )
    mlflow.set_tag("registered_model", f"{spec.registered_name}/{info.registered_model_version}")
    return info

"""The tabular steps: ``train_risk``, ``train_accept`` and their gate, ``promote``."""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from retention.config import Config
from retention.data.steps import log_split_inputs, processed_dir_of
from retention.errors import RegistryError
from retention.model_cards import write_cards
from retention.runs import step_run


def _train(entry_point: str, cfg: Config, params: dict[str, Any]) -> str:
    from retention.data.pipeline import load_split
    from retention.tabular.features import CALENDAR_KEY, calendar_distribution
    from retention.tabular.logging import log_training
    from retention.tabular.train import ACCEPT, RISK, accept_xy, risk_xy, train_model

    spec, dataset, to_xy, model_cfg = {
        "train_risk": (RISK, "telco", risk_xy, cfg.risk),
        "train_accept": (ACCEPT, "bank", accept_xy, cfg.accept),
    }[entry_point]
    with step_run(entry_point, cfg, params) as run:
        processed = processed_dir_of(params.get("data_run_id", "none"), cfg)
        frames = {s: load_split(processed, dataset, s) for s in ("train", "valid", "test")}
        inputs = log_split_inputs(processed, dataset, frames)  # lineage: the data run's splits
        splits = {s: to_xy(df) for s, df in frames.items()}
        result = train_model(spec, splits["train"], splits["valid"], splits["test"], model_cfg,
                             seed=cfg.data.seed, ece_bins=cfg.gate.ece_bins)
        # acceptance never reads the contact's date: its training calendar travels with the model
        metadata = ({CALENDAR_KEY: [list(cell) for cell in calendar_distribution(splits["train"][0])]}
                    if spec is ACCEPT else None)
        info = log_training(result, splits["test"][0], cfg.gate.ece_bins, inputs["test"], metadata)
        write_cards(MlflowClient(), spec.registered_name, info.registered_model_version)
        m = result.metrics
        print(f"{entry_point}: {spec.registered_name} v{info.registered_model_version} in {result.seconds:.1f}s; "
              f"test AUC {m['raw']['roc_auc']:.4f} -> {m['calibrated']['roc_auc']:.4f} (logreg "
              f"{m['logreg']['roc_auc']:.4f}), ECE {m['raw']['ece']:.4f} -> {m['calibrated']['ece']:.4f} "
              f"(logreg {m['logreg']['ece']:.4f})")
        return run.info.run_id


def train_risk(cfg: Config, params: dict[str, Any]) -> str:
    """The ``train_risk`` step: calibrated XGBoost churn risk, registered as ``churn-risk``."""
    return _train("train_risk", cfg, params)


def train_accept(cfg: Config, params: dict[str, Any]) -> str:
    """The ``train_accept`` step: calibrated, monotone offer acceptance, registered as ``offer-accept``."""
    return _train("train_accept", cfg, params)


def promote(cfg: Config, params: dict[str, Any]) -> str:
    """The ``promote`` step: gate the candidate versions of ``churn-risk`` and ``offer-accept``."""
    from retention.registry import promote_version, thresholds_for

    client = MlflowClient()
    with step_run("promote", cfg, params) as run:
        for name, key in (("churn-risk", "risk_run_id"), ("offer-accept", "accept_run_id")):
            run_id = params.get(key, "none")
            if run_id in ("", "none"):
                versions = client.search_model_versions(f"name='{name}'", order_by=["version_number DESC"],
                                                        max_results=1)
            else:
                versions = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
            if not versions:
                producer = "train_risk" if name == "churn-risk" else "train_accept"
                source = f" from run {run_id}" if run_id not in ("", "none") else ""
                raise RegistryError(f"no version of '{name}' to gate{source}; run the '{producer}' step first.")
            version = versions[0]
            metrics = client.get_run(version.run_id).data.metrics
            candidate = {"roc_auc": metrics["test_roc_auc"], "ece": metrics["test_ece"]}
            verdict = promote_version(client, name, version.version, candidate, thresholds_for(name, cfg.gate),
                                      cfg.gate.tolerance, champion_metrics_key="test_")
            write_cards(client, name, version.version)  # the card now carries the verdict
            mlflow.set_tag(f"verdict.{name}", f"v{version.version} -> {verdict.alias}")
            mlflow.log_metrics({f"{name.replace('-', '_')}_promoted": float(verdict.promote)})
            reasons = "; ".join(verdict.reasons) or "meets every threshold"
            print(f"promote: {name} v{version.version} -> {verdict.alias} ({reasons})")
        return run.info.run_id

"""One function per pipeline step: open the MLflow run, call the library, log the results.

Each function is what ``mlflow run . -e <step>`` and ``retention <step>`` execute. Under
``mlflow run`` the run already exists (``MLFLOW_RUN_ID``) and is resumed; from the CLI a new
run is started and tagged with the entry point so that ``main`` can reuse it.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.tracking.default_experiment import DEFAULT_EXPERIMENT_ID
from mlflow.utils import mlflow_tags

from retention.config import Config
from retention.errors import DataSourceError, DataValidationError, RegistryError
from retention.model_cards import step_description, write_cards
from retention.tracking import (
    NOTE,
    configure_tracking,
    describe_experiment,
    describe_run,
    git_commit,
    log_params_flat,
    log_split_inputs,
    run_step,
    tracking_uri,
)

log = logging.getLogger(__name__)


@contextmanager
def step_run(entry_point: str, cfg: Config, params: dict[str, Any]) -> Iterator[mlflow.ActiveRun]:
    """Start (or resume, under ``mlflow run``) the run of one step, with params logged."""
    resuming = "MLFLOW_RUN_ID" in os.environ  # launched by `mlflow run`: the run and its experiment exist
    if resuming:
        mlflow.set_tracking_uri(tracking_uri())
    else:
        configure_tracking()
    tags = {mlflow_tags.MLFLOW_PROJECT_ENTRY_POINT: entry_point}
    if not resuming:
        commit = git_commit()
        if commit:
            tags[mlflow_tags.MLFLOW_GIT_COMMIT] = commit
    name = f"main ({cfg.profile})" if entry_point == "main" else entry_point
    # MLflow system metrics (CPU, memory, disk, GPU) every 10 s under `system/`; main only waits on its children.
    with mlflow.start_run(run_name=None if resuming else name, tags=tags,
                          log_system_metrics=entry_point != "main") as run:
        if resuming:  # `mlflow run` gave the run a random name ("respected-bee-864"): name it after its step
            mlflow.set_tag(mlflow_tags.MLFLOW_RUN_NAME, name)
        if NOTE not in run.data.tags:
            describe_run(step_description(entry_point, cfg.profile))
        if resuming and run.info.experiment_id == DEFAULT_EXPERIMENT_ID:
            if mlflow_tags.MLFLOW_PARENT_RUN_ID not in run.data.tags:  # said once, by the run started first
                log.warning("this run is in MLflow's 'Default' experiment, not 'retention' (an `mlflow` without "
                            "this project installed cannot use its default-experiment plugin). If that is not "
                            "what you meant, pass `--experiment-name retention` (or set "
                            "MLFLOW_EXPERIMENT_NAME=retention), or use the project's environment: `make venv`, "
                            "then `.venv/bin/mlflow run . -e %s`.", entry_point)
        elif resuming:  # `mlflow run --experiment-name` made the experiment: describe it
            describe_experiment(run.info.experiment_id)
        log_params_flat({k: v for k, v in params.items() if k not in run.data.params})
        mlflow.log_dict(cfg.to_flat_dict(), "config.json")
        yield run
    _mirror_stages(entry_point, run.info.run_id)


def _mirror_stages(entry_point: str, run_id: str) -> None:
    """After a step: mirror the registry's aliases into stages (champion -> Production, challenger -> Staging)."""
    from mlflow.exceptions import MlflowException

    from retention.registry import mirror_all

    try:
        moved = mirror_all(why=f"after step {entry_point}, run {run_id}")
    except MlflowException as exc:  # the step's own work is done and logged: say so, do not fail it
        print(f"[registry] warning: stages not mirrored ({exc.message.splitlines()[0]}); "
              "run `retention registry sync`", file=sys.stderr)
        return
    for t in moved:
        print(f"[registry] {t.name} v{t.version}: {t.from_stage} -> {t.to_stage}")


def _log_report(report) -> None:
    mlflow.log_dict(report.result, f"gx/{report.suite}.json")
    mlflow.set_tag(f"gx.{report.suite}", "passed" if report.success else "failed")
    pct = report.statistics.get("success_percent")
    if pct is not None:
        mlflow.log_metric(f"gx_{report.suite}_success_pct", float(pct))


def data(cfg: Config, params: dict[str, Any], progress: bool = True) -> str:
    """The ``data`` step. Returns the run id."""
    from retention.data.pipeline import DATASETS, prepare

    with step_run("data", cfg, params) as run:
        try:
            result = prepare(cfg.data, sink=_log_report, progress=progress)
        except DataValidationError as exc:
            mlflow.log_text(exc.summary(), "gx/failure.txt")
            mlflow.set_tag("gx.verdict", "failed")
            raise
        mlflow.set_tag("gx.verdict", "passed")
        mlflow.log_dict(result.manifest, "data/manifest.json")
        for key, res in result.raw.items():
            mlflow.set_tag(f"raw.{key}", f"{res.origin}:{res.sha256[:12]}{'' if res.verified else ' (unverified)'}")
        for name, parts in result.splits.items():
            label = DATASETS[name]
            for split, df in parts.items():
                info = result.manifest["datasets"][name][split]
                with warnings.catch_warnings():
                    # MLflow hints about ambiguous local sources and integer columns: not actionable here.
                    warnings.simplefilter("ignore", UserWarning)
                    ds = mlflow.data.from_pandas(
                        df,
                        source=str((result.processed_dir / info["path"]).resolve()),
                        name=f"{name}-{split}",
                        targets=label,
                        digest=info["sha256"][:16],
                    )
                    mlflow.log_input(ds, context=split)
                mlflow.log_metric(f"rows_{name}_{split}", info["rows"])
        for reason, n in result.dropped.items():
            mlflow.log_metric(f"dropped_{reason.replace(':', '_').replace('-', '_')}", n)
        mlflow.set_tag("processed_dir", str(result.processed_dir.resolve()))
        n_splits = sum(len(parts) for parts in result.splits.values())
        print(f"data: validated and wrote {len(result.splits)} datasets ({n_splits} splits) to {result.processed_dir}")
        for name in result.splits:
            rows = {s: result.manifest["datasets"][name][s]["rows"] for s in result.splits[name]}
            print(f"  {name:12s} {rows}")
        return run.info.run_id


def data_outputs_ok(run: Run) -> bool:
    """True when the Parquet files a finished ``data`` run wrote are still there, unchanged."""
    from retention.data.pipeline import outputs_match

    processed = run.data.tags.get("processed_dir")
    if not processed:
        return False
    manifest = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/data/manifest.json")
    return outputs_match(processed, manifest)


def processed_dir_of(data_run_id: str, cfg: Config) -> Path:
    """The processed-data folder handed over by a ``data`` run (or the configured one for 'none')."""
    if data_run_id in ("", "none"):
        return Path(cfg.data.processed_dir)
    run = MlflowClient().get_run(data_run_id)
    if not data_outputs_ok(run):
        raise DataSourceError(
            f"the outputs of data run {data_run_id} are missing or changed; run the 'data' step again."
        )
    return Path(run.data.tags["processed_dir"])


def _train(entry_point: str, cfg: Config, params: dict[str, Any]) -> str:
    from retention.data.pipeline import load_split
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
        info = log_training(result, splits["test"][0], cfg.gate.ece_bins, inputs["test"])
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


def sft(cfg: Config, params: dict[str, Any], progress: bool = True) -> str:
    """The ``sft`` step; it lives in :mod:`retention.messaging.steps` (kept here for old imports)."""
    from retention.messaging.steps import sft as messaging_sft

    return messaging_sft(cfg, params, progress)


def bundle(cfg: Config, params: dict[str, Any], progress: bool = True) -> str:
    """The ``bundle`` step; it lives in :mod:`retention.serving.steps` (kept here for old imports)."""
    from retention.serving.steps import bundle as serving_bundle

    return serving_bundle(cfg, params, progress)


def main(cfg: Config, params: dict[str, Any], reuse: bool = True) -> str:
    """The ``main`` step: run every step in order, handing run ids along (multistep style)."""
    with step_run("main", cfg, {**params, "reuse": reuse}) as run:
        exp_id = run.info.experiment_id
        profile = params["profile"]

        def step(entry_point: str, step_params: dict[str, Any], outputs_ok=None) -> str:
            child = run_step(entry_point, step_params, reuse=reuse, experiment_id=exp_id, outputs_ok=outputs_ok)
            mlflow.set_tag(f"step.{entry_point}.run_id", child.info.run_id)
            return child.info.run_id

        data_run = step("data", {k: params[k] for k in ("profile", "data_dir", "allow_download")}, data_outputs_ok)
        risk_run = step("train_risk", {"profile": profile, "data_run_id": data_run})
        accept_run = step("train_accept", {"profile": profile, "data_run_id": data_run})
        sft_run = step("sft", {"profile": profile, "data_run_id": data_run})
        reward_run = step("train_reward", {"profile": profile, "data_run_id": data_run, "sft_run_id": sft_run,
                                           "extra_preferences": "none"})
        ppo_text_run = step("ppo_text", {"profile": profile, "data_run_id": data_run, "sft_run_id": sft_run,
                                         "reward_run_id": reward_run})
        promote_run = step("promote", {"profile": profile, "risk_run_id": risk_run, "accept_run_id": accept_run})
        policy_run = step("train_policy", {"profile": profile, "data_run_id": data_run, "promote_run_id": promote_run})
        eval_run = step("evaluate_policy", {"profile": profile, "data_run_id": data_run, "policy_run_id": policy_run})
        bundle_run = step("bundle", {"profile": profile, "data_run_id": data_run, "evaluate_run_id": eval_run,
                                     "sft_run_id": sft_run, "promote_run_id": promote_run,
                                     "generator_run_id": ppo_text_run})
        # a first monitoring window: held-out customers decided through the bundle (dry runs), then drift
        from retention.monitoring.steps import demo_traffic, pinned_ledger_url

        bundled = f"runs:/{bundle_run}/retention"
        sent = demo_traffic(cfg, data_run, bundled)
        print(f"[main] demo traffic: {sent} held-out customers decided through the bundle (dry run, nothing booked)")
        child = run_step("drift", {"profile": profile, "window": "24h", "ledger_url": pinned_ledger_url(cfg),
                                   "model_uri": bundled, "fail_on_drift": "false"}, reuse=False, experiment_id=exp_id)
        mlflow.set_tag("step.drift.run_id", child.info.run_id)
        print(f"main: done; browse the runs with `make ui` (tracking: {mlflow.get_tracking_uri()})")
        return run.info.run_id


def write_default_experiment() -> str:
    """Create the project's experiment (artifacts in ./mlartifacts) and return its id."""
    exp_id = configure_tracking()
    print(f"experiment id {exp_id} at {mlflow.get_tracking_uri()} (artifacts: {Path('mlartifacts').resolve()})")
    return exp_id


# The policy's steps live beside the policy; re-exported so `retention.steps.<step>` keeps working.
from retention.policy.steps import evaluate_policy, train_policy  # noqa: E402, F401

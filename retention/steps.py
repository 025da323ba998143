"""One function per pipeline step: open the MLflow run, call the library, log the results.

Each function is what ``mlflow run . -e <step>`` and ``retention <step>`` execute. Under
``mlflow run`` the run already exists (``MLFLOW_RUN_ID``) and is resumed; from the CLI a new
run is started and tagged with the entry point so that ``main`` can reuse it.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.utils import mlflow_tags

from retention.config import Config
from retention.errors import DataValidationError
from retention.tracking import configure_tracking, git_commit, log_params_flat, run_step, tracking_uri

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
    with mlflow.start_run(run_name=None if resuming else entry_point, tags=tags) as run:
        log_params_flat({k: v for k, v in params.items() if k not in run.data.params})
        mlflow.log_dict(cfg.to_flat_dict(), "config.json")
        yield run


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


# The steps ``main`` runs, in order: (entry point, parameters taken from main's, output check).
MAIN_STEPS: list[tuple[str, tuple[str, ...], Callable[[Run], bool] | None]] = [
    ("data", ("profile", "data_dir", "allow_download"), data_outputs_ok),
]


def main(cfg: Config, params: dict[str, Any], reuse: bool = True) -> str:
    """The ``main`` step: run every step in order, reusing finished ones (multistep style)."""
    with step_run("main", cfg, {**params, "reuse": reuse}) as run:
        exp_id = run.info.experiment_id
        summary = {}
        for entry_point, names, outputs_ok in MAIN_STEPS:
            step_params = {k: params[k] for k in names}
            child = run_step(entry_point, step_params, reuse=reuse, experiment_id=exp_id, outputs_ok=outputs_ok)
            summary[entry_point] = child.info.run_id
            mlflow.set_tag(f"step.{entry_point}.run_id", child.info.run_id)
        mlflow.log_dict(summary, "steps.json")
        print("main: finished steps " + json.dumps(summary))
        print(f"main: browse the runs with `make ui` (tracking: {mlflow.get_tracking_uri()})")
        return run.info.run_id


def write_default_experiment() -> str:
    """Create the project's experiment (artifacts in ./mlartifacts) and return its id."""
    exp_id = configure_tracking()
    print(f"experiment id {exp_id} at {mlflow.get_tracking_uri()} (artifacts: {Path('mlartifacts').resolve()})")
    return exp_id

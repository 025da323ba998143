"""The run of one pipeline step: open (or resume) its MLflow run, log its parameters and config.

:func:`step_run` is the shared plumbing under every part's steps (``retention.<part>.steps``).
Under ``mlflow run`` the run already exists (``MLFLOW_RUN_ID``) and is resumed; from the CLI a new
run is started and tagged with the entry point so that ``main`` can reuse it. After the step the
registry's aliases are mirrored into stages.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
from mlflow.tracking.default_experiment import DEFAULT_EXPERIMENT_ID
from mlflow.utils import mlflow_tags

from retention.config import Config
from retention.model_cards import step_description
from retention.tracking import (
    NOTE,
    configure_tracking,
    describe_experiment,
    describe_run,
    git_commit,
    log_params_flat,
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

"""The history of stage transitions: one MLflow table per registered model, not JSON in version tags.

A model version carries one readable tag, ``stage.last_transition`` (written by
:mod:`retention.registry`). Every transition, with who, when, from and to which stage and why,
is appended to the table ``stage_transitions.json`` of one run per registered model in the
experiment ``registry-history`` (run name = the model's name). The MLflow UI shows it under that
run's Artifacts tab, ``mlflow.load_table`` reads it, and it lives in the same tracking server as
the registry (a copy to ``prod.NAME`` starts its own history there).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from retention.tracking import CUSTOM_MODEL_DEVELOPMENT, EXPERIMENT_KIND, environment

HISTORY_EXPERIMENT = "registry-history"
HISTORY_TABLE = "stage_transitions.json"
MODEL_TAG = "retention.registered_model"
COLUMNS = ("version", "from", "to", "who", "when", "why", "forced")


# log_table and load_table move a tiny file: MLflow's per-file download bar would be noise
QUIET = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def history_run_id(client: MlflowClient, name: str, *, create: bool = True) -> str | None:
    """The run that holds ``name``'s transition table (made on first use when ``create``)."""
    experiment = client.get_experiment_by_name(HISTORY_EXPERIMENT)
    if experiment is None:
        if not create:
            return None
        experiment_id = client.create_experiment(
            HISTORY_EXPERIMENT, tags={"mlflow.note.content": "Stage transitions of every registered model: one "
                                      "run per model, its table `stage_transitions.json` (Artifacts tab).",
                                      EXPERIMENT_KIND: CUSTOM_MODEL_DEVELOPMENT})  # opens on its runs
    else:
        experiment_id = experiment.experiment_id
    # matched here, not in a filter string: a name may hold a quote, which MLflow's filter keeps escaped
    for run in client.search_runs([experiment_id], max_results=1000):
        if run.data.tags.get(MODEL_TAG) == name:
            return run.info.run_id
    if not create:
        return None
    run = client.create_run(experiment_id, run_name=name, tags={MODEL_TAG: name})
    client.set_terminated(run.info.run_id)  # a ledger, not a job: it never shows as "running"
    return run.info.run_id


def append(client: MlflowClient, name: str, row: dict[str, Any]) -> None:
    """Append one transition (the keys of :data:`COLUMNS`) to ``name``'s table."""
    frame = pd.DataFrame([{c: row[c] for c in COLUMNS}])
    with environment(**QUIET):
        client.log_table(history_run_id(client, name), data=frame, artifact_file=HISTORY_TABLE)


def read(client: MlflowClient, name: str, version: str | None = None) -> list[dict[str, Any]]:
    """``name``'s recorded transitions, oldest first (only ``version``'s when given)."""
    run_id = history_run_id(client, name, create=False)
    if run_id is None:
        return []
    experiment_id = client.get_run(run_id).info.experiment_id
    with environment(**QUIET):
        table = client.load_table(experiment_id, HISTORY_TABLE, run_ids=[run_id])
    if table.empty:
        return []
    rows = table[list(COLUMNS)].astype({"version": str}).to_dict("records")
    return [r for r in rows if version is None or r["version"] == str(version)]

"""MLflow tracking: the default store, the project's experiment, and reuse of finished steps.

Locally the embedded default is ``sqlite:///mlflow.db`` with artifacts under ``./mlartifacts``;
``MLFLOW_TRACKING_URI`` (e.g. a tracking server backed by Postgres and GCS) overrides it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.utils import mlflow_tags

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACT_DIR = "mlartifacts"
DEFAULT_EXPERIMENT = "retention"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTE = "mlflow.note.content"  # the tag MLflow's UI shows and edits as a run's or experiment's description
EXPERIMENT_DESCRIPTION = """\
**retention**: cut customer churn with contacts that pay for themselves.

One `main` run per pipeline (named `main (<profile>)`), with one child run per step, each named after
its step (`data`, `train_risk`, `train_accept`, `sft`, `train_reward`, `ppo_text`, `promote`,
`train_policy`, `evaluate_policy`, `bundle`, `drift`). Expand the `main` run in the runs table to see
them. Each run's description says what it did; its Datasets panel says which validated splits it
read (logged by the `data` run). Model cards are the descriptions of the registered models
(`churn-risk`, `offer-accept`, `retention-policy`, `message-generator`, `reward-model`, `retention`)
and their versions in the Models tab. The composite `retention` model records one trace per served
decision (Traces tab: decide, generate, shield).
"""


def tracking_uri() -> str:
    """The tracking URI in force: ``$MLFLOW_TRACKING_URI`` or the local sqlite default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def configure_tracking(name: str | None = None) -> str:
    """Point MLflow at the tracking store and make sure the project's experiment exists.

    With a local store (sqlite or file) the experiment's artifacts go to ``./mlartifacts``
    (not MLflow's ``./mlruns`` default); a remote server keeps its own artifact root.

    Returns
    -------
    str
        The experiment id.
    """
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    name = name or experiment_name()
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        artifact_location = None
        if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
            artifact_location = (Path.cwd() / DEFAULT_ARTIFACT_DIR).resolve().as_uri()
        exp_id = client.create_experiment(name, artifact_location=artifact_location)
    else:
        exp_id = exp.experiment_id
    describe_experiment(exp_id)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def git_commit(path: Path | str = PROJECT_ROOT) -> str | None:
    """HEAD's commit of the repository at ``path``, or None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def find_finished_run(
    entry_point: str,
    parameters: Mapping[str, Any],
    commit: str | None,
    experiment_id: str,
) -> Run | None:
    """Newest FINISHED run of ``entry_point`` with the same parameters and git commit.

    This is the MLflow multistep-workflow reuse rule: a step that already ran successfully
    with these inputs is not run again. Parameters are compared as strings, the way MLflow
    stores them; a run without a git commit is never reused.
    """
    if commit is None:
        return None
    client = MlflowClient()
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{mlflow_tags.MLFLOW_PROJECT_ENTRY_POINT}` = '{entry_point}' "
            "and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=200,
    )
    wanted = {k: str(v) for k, v in parameters.items()}
    for run in runs:
        if run.data.tags.get(mlflow_tags.MLFLOW_GIT_COMMIT) != commit:
            continue
        if all(run.data.params.get(k) == v for k, v in wanted.items()):
            return run
    return None


def run_step(
    entry_point: str,
    parameters: Mapping[str, Any],
    *,
    reuse: bool = True,
    experiment_id: str | None = None,
    outputs_ok: Callable[[Run], bool] | None = None,
) -> Run:
    """Run one MLproject entry point as a child of the active run, or reuse a finished one.

    The step runs through :func:`mlflow.projects.run` with ``env_manager="local"``, so it
    executes exactly as ``mlflow run . -e <entry_point>`` would. A finished run is reused only
    if ``outputs_ok(run)`` (when given) confirms that what it produced is still in place.
    """
    experiment_id = experiment_id or configure_tracking()
    commit = git_commit()
    if reuse:
        found = find_finished_run(entry_point, parameters, commit, experiment_id)
        if found is not None and (outputs_ok is None or outputs_ok(found)):
            print(f"[main] reusing finished '{entry_point}' run {found.info.run_id} (same parameters and commit)")
            return found
        if found is not None:
            print(f"[main] '{entry_point}' run {found.info.run_id} matches, but its outputs changed: re-running")
    print(f"[main] launching '{entry_point}' with {dict(parameters)}")
    submitted = mlflow.projects.run(
        str(PROJECT_ROOT),
        entry_point=entry_point,
        parameters={k: str(v) for k, v in parameters.items()},
        env_manager="local",
        experiment_id=experiment_id,
        synchronous=True,
    )
    return MlflowClient().get_run(submitted.run_id)


def log_params_flat(params: Mapping[str, Any]) -> None:
    """Log params, turning None into the string 'None' (MLflow rejects None)."""
    mlflow.log_params({k: ("None" if v is None else v) for k, v in params.items()})


def pip_requirements(pinned: list[str], unpinned: list[str] = ()) -> list[str]:
    """``name==installed version`` for each of ``pinned`` (local tags like ``+cpu`` dropped), then ``unpinned``."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in pinned] + list(unpinned)


EXPERIMENT_KIND = "mlflow.experimentKind"  # the tag MLflow 3's UI reads to choose an experiment's layout
CUSTOM_MODEL_DEVELOPMENT = "custom_model_development"  # runs, models and metrics first (not the GenAI view)


def describe_experiment(experiment_id: str) -> None:
    """Give the experiment its description (``mlflow.note.content``) and its kind, unless it has them.

    The kind ``custom_model_development`` makes MLflow 3's UI open the experiment on its runs (with
    "Runs" and "Models" tabs), not on the GenAI overview it infers from the composite's traces. A
    user's own description or kind is kept.
    """
    client = MlflowClient()
    tags = client.get_experiment(experiment_id).tags
    if NOTE not in tags:
        client.set_experiment_tag(experiment_id, NOTE, EXPERIMENT_DESCRIPTION)
    if EXPERIMENT_KIND not in tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, CUSTOM_MODEL_DEVELOPMENT)


def describe_run(text: str) -> None:
    """Set the active run's description (the ``mlflow.note.content`` tag the UI shows above a run)."""
    mlflow.set_tag(NOTE, text)


def span(enabled: bool, name: str, span_type: str = "UNKNOWN", **attributes: Any):
    """An MLflow tracing span (a new trace when none is active), or a no-op when ``enabled`` is false.

    Only ``attributes`` are recorded (never the function's inputs or outputs), so a caller decides
    what a trace may hold; the serving code puts no customer data in them. Yields the span (or None).
    """
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    return mlflow.start_span(name=name, span_type=span_type, attributes=attributes)


@contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or, with ``None``, remove) environment variables inside the block; restore them after.

    For settings that MLflow and its integrations read only from the environment
    (``RETENTION_LEDGER_URL`` during model validation, ``MLFLOW_RUN_ID`` for transformers' callback).
    """
    def apply(settings: Mapping[str, str | None]) -> None:
        for key, value in settings.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    before = {k: os.environ.get(k) for k in values}
    try:
        apply(values)
        yield
    finally:
        apply(before)

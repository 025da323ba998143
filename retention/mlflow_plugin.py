"""MLflow plugin: runs started in this project's folder without a chosen experiment go to ``retention``.

``mlflow run . -e sft`` without ``--experiment-name`` (or any MLflow client started in the project
folder without ``MLFLOW_EXPERIMENT_NAME``/``MLFLOW_EXPERIMENT_ID`` or ``set_experiment``) asks
MLflow's default-experiment providers where to log. This provider, registered under the
``mlflow.default_experiment_provider`` entry point in ``pyproject.toml``, answers with the project's
experiment in the project's tracking store (:func:`retention.tracking.configure_tracking`:
``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``, artifacts in ``./mlartifacts``) instead of
``Default``. Outside the project folder it stays out of the way.
"""

from __future__ import annotations

from pathlib import Path

# MLflow loads this module while ``import mlflow`` runs, so it imports neither mlflow nor ``retention``
# at the top: the provider implements mlflow's ``DefaultExperimentProvider`` interface by its two methods.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def in_project_folder(cwd: Path | None = None) -> bool:
    """True in a folder holding this project's ``MLproject`` (``name: retention``), where ``mlflow run .``
    is started: this checkout, another clone, or a copy that MLflow's virtualenv installed the package from."""
    here = (cwd or Path.cwd()).resolve()
    if here == PROJECT_ROOT.resolve() and (here / "MLproject").is_file():
        return True
    try:
        text = (here / "MLproject").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.strip() == "name: retention" for line in text.splitlines()[:20])


class ProjectExperimentProvider:
    """``mlflow.tracking.default_experiment.abstract_context.DefaultExperimentProvider``, by interface."""

    def in_context(self) -> bool:
        return in_project_folder()

    def get_experiment_id(self) -> str:
        from retention.tracking import configure_tracking

        return configure_tracking()

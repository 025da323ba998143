"""Where the policy meets MLflow: pools from champion models, logging and gating policies."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from retention.config import Config
from retention.data.pipeline import load_split
from retention.errors import RegistryError
from retention.models_from_code import log_model_from_code
from retention.policy.cohort import CustomerPool, build_pool
from retention.policy.env import OBS_COLUMNS
from retention.policy.evaluate import Evaluation
from retention.policy.model import MASK_COLUMNS, OUTPUT_COLUMNS
from retention.registry import CHALLENGER, CHAMPION
from retention.tabular.features import calendar_from_metadata
from retention.tracking import pip_requirements

POLICY_MODEL = "retention-policy"
COMPARISON_TABLE = "evaluation/comparison.json"  # the evaluate_policy run's table of every policy


def champion_models(client: MlflowClient | None = None):
    """Load the ``champion`` versions of churn-risk and offer-accept.

    Returns
    -------
    tuple
        (risk, accept, versions, calendar): the two models, their versions, and the acceptance
        model's training calendar (:func:`~retention.tabular.features.calendar_from_metadata`).
    """
    client = client or MlflowClient()
    models, versions = [], {}
    for name in ("churn-risk", "offer-accept"):
        try:
            mv = client.get_model_version_by_alias(name, CHAMPION)
        except mlflow.exceptions.MlflowException:
            raise RegistryError(
                f"'{name}' has no champion version; run `retention train_risk`, `retention train_accept` and "
                "`retention promote` first (or `make run`)."
            ) from None
        models.append(mlflow.sklearn.load_model(f"models:/{name}@{CHAMPION}"))
        versions[name] = mv.version
    uri = f"models:/offer-accept@{CHAMPION}"
    calendar = calendar_from_metadata(mlflow.models.get_model_info(uri).metadata,
                                      f"offer-accept v{versions['offer-accept']}")
    return models[0], models[1], versions, calendar


def pool_for_split(cfg: Config, processed_dir: Path, split: str) -> tuple[CustomerPool, dict[str, str]]:
    """Score a Telco split with the champion models (train: training cohorts; test: held-out)."""
    risk, accept, versions, calendar = champion_models()
    customers = load_split(processed_dir, "telco", split)
    return build_pool(customers, risk, accept, cfg.env, calendar), versions


def log_policy(spec: dict, weights: Path | None, tags: dict[str, str]) -> mlflow.models.model.ModelInfo:
    """Log a policy (PPO or baseline) as a pyfunc and register it as a version of retention-policy."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "policy.json"
        spec_path.write_text(json.dumps(spec, indent=2))
        artifacts = {"spec": str(spec_path)}
        if weights is not None:
            artifacts["weights"] = str(weights)
        example = pd.DataFrame([[0.3, 0.05, 0.07, 0.09, 0.2, 1.0, 1.0, 0.0, 0.0, 1.0, 0.7]], columns=list(OBS_COLUMNS))
        example = example.assign(**{c: True for c in MASK_COLUMNS})
        signature = ModelSignature(  # declared, not inferred: MLflow's integer-column hint does not apply
            inputs=Schema([ColSpec("double", c) for c in OBS_COLUMNS] + [ColSpec("boolean", c) for c in MASK_COLUMNS]),
            outputs=Schema([ColSpec("long", c) for c in OUTPUT_COLUMNS]))
        info = log_model_from_code(
            "policy", Path(__file__).with_name("model_code.py"), artifacts,
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(["mlflow", "torch", "numpy", "pandas"], ["scikit-learn", "gymnasium"]),
            registered_model_name=POLICY_MODEL,
        )
    client = MlflowClient()
    for k, v in {"policy.kind": spec["kind"], **tags}.items():
        client.set_model_version_tag(POLICY_MODEL, info.registered_model_version, k, str(v))
    return info


def comparison_line(evaluation: Evaluation, name: str) -> str:
    """One readable line of ``name``'s row of the comparison (the whole table is the run's artifact)."""
    row = evaluation.summary.loc[name]

    def interval(mean: float, lo: float, hi: float, sign: str = "") -> str:
        return f"{mean:{sign},.1f} [{lo:{sign},.1f}, {hi:{sign},.1f}]"

    parts = [f"net revenue {interval(row['net_revenue_mean'], row['net_revenue_lo'], row['net_revenue_hi'])}"]
    share = row.get("share_of_bound_mean")
    if share is not None and not pd.isna(share):
        parts.append(f"{100 * share:.1f} % of the Lagrangian bound")
    violations = row.get("violations_mean")
    if violations is not None and not pd.isna(violations):
        parts.append(f"{violations:g} violations")
    if name in evaluation.paired.index and name != evaluation.reference:
        d = evaluation.paired.loc[name]
        parts.append(f"vs {evaluation.reference} {interval(d['diff'], d['lo'], d['hi'], '+')}")
    return "; ".join(parts) + " (95 % intervals)"


def gate_policies(evaluation: Evaluation, champion_name: str, reason: str, versions: dict[str, str]) -> str:
    """Alias the chosen policy's version ``champion`` and the others evaluated here ``challenger``.

    ``versions`` maps policy name -> registered version (the winner must be in it). The whole
    comparison (mean net revenue and CI, share of the Lagrangian bound, violations, and the paired
    difference to the reference baseline with its CI) is the evaluation run's table
    (:data:`COMPARISON_TABLE`); each version involved gets its own row as one readable tag, and a
    tag naming the table.
    The choice itself is :func:`retention.policy.evaluate.choose_champion`'s: a challenger is crowned
    only on a significantly positive paired difference.
    """
    client = MlflowClient()
    run = mlflow.active_run()
    table = f"runs:/{run.info.run_id}/{COMPARISON_TABLE}" if run else None
    for name, version in versions.items():
        winner = name == champion_name
        client.set_model_version_tag(POLICY_MODEL, version, "gate.verdict", "champion" if winner else "not chosen")
        client.set_model_version_tag(POLICY_MODEL, version, "gate.reason", reason)
        client.set_model_version_tag(POLICY_MODEL, version, "gate.comparison", comparison_line(evaluation, name))
        if table:
            client.set_model_version_tag(POLICY_MODEL, version, "gate.comparison_table", table)
        client.set_model_version_tag(POLICY_MODEL, version, "gate.champion_policy", champion_name)
    client.set_registered_model_alias(POLICY_MODEL, CHAMPION, versions[champion_name])
    if "ppo" in versions and champion_name != "ppo":
        client.set_registered_model_alias(POLICY_MODEL, CHALLENGER, versions["ppo"])
    return versions[champion_name]

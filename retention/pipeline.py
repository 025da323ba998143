"""The pipeline: ``main`` runs every step in order, handing run ids along (MLflow multistep style).

The top of the import graph: it knows every part's steps by their entry-point names (each runs as
``mlflow run . -e <step>`` through :func:`retention.tracking.run_step`), and no part imports it.
"""

from __future__ import annotations

from typing import Any

import mlflow

from retention.config import Config
from retention.data.steps import data_outputs_ok
from retention.monitoring.outcome_steps import simulated_window
from retention.monitoring.steps import demo_traffic, pinned_ledger_url
from retention.runs import step_run
from retention.tracking import run_step


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
        bundled = f"runs:/{bundle_run}/retention"
        sent = demo_traffic(cfg, data_run, bundled)
        generated = sent.get("messages_generator", 0)
        print(f"[main] demo traffic: {sent['decisions']} held-out customers decided through the bundle (dry run, "
              f"nothing booked); {sent['contacts']} contacts, messages by source: "
              f"{ {k.removeprefix('messages_'): v for k, v in sent.items() if k.startswith('messages_')} }; "
              f"generator share {generated / max(sent['contacts'], 1):.1%}")
        mlflow.log_metrics({f"demo/{k}": float(v) for k, v in sent.items()})
        child = run_step("drift", {"profile": profile, "window": "24h", "ledger_url": pinned_ledger_url(cfg),
                                   "model_uri": bundled, "fail_on_drift": "false"}, reuse=False, experiment_id=exp_id)
        mlflow.set_tag("step.drift.run_id", child.info.run_id)
        # the loop closed in a simulated world whose truth differs from the models: held-out customers
        # decided for real on a ledger of its own, outcomes recorded, then the outcome report
        world_url, truth = simulated_window(cfg, data_run, bundled, cfg.monitoring.world_ledger)
        print(f"[main] simulated world: the held-out customers decided and their outcomes recorded in "
              f"{cfg.monitoring.world_ledger}; its true churn reduction is {100 * truth['all']:+.2f} pt")
        mlflow.set_tag("world.true_churn_reduction", f"{truth['all']:.5f}")
        child = run_step("outcome_report", {"profile": profile, "window": "all", "as_of": "now",
                                            "ledger_url": world_url, "fail_on_alarm": "false"},
                         reuse=False, experiment_id=exp_id)
        mlflow.set_tag("step.outcome_report.run_id", child.info.run_id)
        print(f"main: done; browse the runs with `make ui` (tracking: {mlflow.get_tracking_uri()})")
        return run.info.run_id

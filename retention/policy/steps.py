"""The policy's pipeline steps: ``train_policy`` and ``evaluate_policy`` (run plumbing: retention.runs)."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from retention.config import Config
from retention.data.steps import log_split_inputs
from retention.errors import RegistryError
from retention.model_cards import step_description, write_cards
from retention.tracking import describe_run


def multiplier_and_decay(cfg: Config, pool) -> tuple[float, np.ndarray]:
    """Median lambda* over ``cfg.eval.lambda_cohorts`` training cohorts and the pool's acceptance decay.

    These are what the registered index policy uses in serving, and PPO's starting budget multiplier.
    """
    from retention.policy.evaluate import cohorts_for_seed
    from retention.policy.guard import GuardRules
    from retention.policy.lagrangian import acceptance_decay, solve_multiplier

    env = cfg.env
    rules = GuardRules(env.fatigue_cap, env.cooldown_days, env.contact_cost)
    budget = env.cohort_size * env.budget_per_customer
    cohorts = cohorts_for_seed(len(pool), env, 777, cfg.eval.lambda_cohorts)
    lams = [solve_multiplier(pool.subset(c), rules, env.horizon_days, budget)[0] for c in cohorts]
    return float(np.median(lams)), acceptance_decay(pool)


def train_policy(cfg: Config, params: dict[str, Any], progress: bool = True) -> str:
    """The ``train_policy`` step: PPO-Lagrangian on cohorts of Telco *train* customers."""
    import tempfile
    from pathlib import Path

    import matplotlib.pyplot as plt
    import torch

    from retention.data.steps import processed_dir_of
    from retention.policy import plots as policy_plots
    from retention.policy.model import policy_spec
    from retention.policy.ppo_lagrangian import train
    from retention.policy.registry import log_policy, pool_for_split
    from retention.runs import step_run

    with step_run("train_policy", cfg, params) as run:
        processed = processed_dir_of(params.get("data_run_id", "none"), cfg)
        pool, versions = pool_for_split(cfg, processed, "train")
        log_split_inputs(processed, "telco", ("train",))  # lineage: the cohorts' customers
        mlflow.set_tags({f"uses.{k}": v for k, v in versions.items()})
        lam, decay = multiplier_and_decay(cfg, pool)
        mlflow.log_params({"pool_customers": len(pool)})
        mlflow.log_metric("lambda_star_train_median", lam)

        constraint: list[tuple[int, dict[str, float]]] = []  # logged at the end, and only if not flat

        def log(metrics: dict[str, float], step: int) -> None:
            held = {k: v for k, v in metrics.items() if k.startswith(CONSTRAINT_SERIES)}
            constraint.append((step, held))
            mlflow.log_metrics({f"train/{k}": v for k, v in metrics.items() if k not in held and v == v}, step=step)

        result = train(pool, cfg.env, cfg.ppo, log=log, progress=progress, lam=lam, decay=decay)
        log_constraint_curves(constraint, cfg)
        mlflow.log_metrics({"train_seconds": result.seconds, "env_steps": result.env_steps})
        fig = policy_plots.learning_curves(result.history)
        mlflow.log_figure(fig, "plots/learning_curves.png")
        plt.close(fig)
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "agent.pt"
            torch.save(result.agent.state_dict(), weights)
            spec = policy_spec("ppo", cfg.env, hidden=cfg.ppo.hidden, index_features=cfg.ppo.index_features,
                               index_prior=cfg.ppo.index_prior, lam=lam, decay=decay.tolist())
            info = log_policy(spec, weights, {"trained_by_run": run.info.run_id})
        mlflow.set_tag("registered_model", f"retention-policy/{info.registered_model_version}")
        write_cards(MlflowClient(), "retention-policy", info.registered_model_version)
        last = result.history[-1]
        print(f"train_policy: {result.env_steps:,} env steps in {result.seconds:.0f}s "
              f"({result.env_steps / result.seconds:,.0f}/s); lambda* (median of training cohorts) {lam:.2f}; "
              f"last training net revenue {last.get('episode_net_revenue', float('nan')):.0f}; "
              f"retention-policy v{info.registered_model_version}")
        return run.info.run_id


def _current_champion_kind(client: MlflowClient) -> str | None:
    from retention.policy.registry import POLICY_MODEL
    from retention.registry import CHAMPION

    try:
        mv = client.get_model_version_by_alias(POLICY_MODEL, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None
    return mv.tags.get("policy.kind")


def report(evaluation) -> str:
    """The bound, every policy's share of it and the paired comparison, as printable text."""
    from retention.policy.evaluate import BOUND, LP_BOUND

    s = evaluation.summary
    lag, lp = s.loc[BOUND], s.loc[LP_BOUND]
    lines = [f"bounds per campaign (mean, 95% CI over {int(lag['campaigns'])} held-out campaigns): "
             f"Lagrangian {lag['net_revenue_mean']:.0f} ({lag['net_revenue_lo']:.0f} to {lag['net_revenue_hi']:.0f}), "
             f"lambda* median {np.median(evaluation.multipliers):.2f}; "
             f"LP {lp['net_revenue_mean']:.0f} ({lp['net_revenue_lo']:.0f} to {lp['net_revenue_hi']:.0f})",
             f"{'policy':<20}{'net revenue':>12}{'share of bound (95% CI)':>28}{'violations':>12}"
             f"{'paired diff vs ' + evaluation.reference + ' (95% CI)':>44}{'n':>5}"]
    for name, row in s.drop(index=[BOUND, LP_BOUND]).iterrows():
        d = evaluation.paired.loc[name]
        lines.append(f"{name:<20}{row['net_revenue_mean']:>12.0f}"
                     f"{row['share_of_bound_mean']:>12.1%} ({row['share_of_bound_lo']:.1%} to "
                     f"{row['share_of_bound_hi']:.1%})"
                     f"{row['violations_mean']:>12.2f}{d['diff']:>+20.0f} ({d['lo']:+.0f} to {d['hi']:+.0f})"
                     f"{'':>8}{int(d['campaigns']):>5}")
    return "\n".join(lines)


def evaluate_policy(cfg: Config, params: dict[str, Any], progress: bool = True) -> str:
    """The ``evaluate_policy`` step: PPO, the baselines and the index policy vs the Lagrangian bound on
    held-out campaigns (paired); the gate crowns a challenger only on a significant paired difference."""
    import matplotlib.pyplot as plt

    from retention.data.steps import processed_dir_of
    from retention.policy import plots as policy_plots
    from retention.policy.baselines import all_baselines
    from retention.policy.evaluate import BOUND, choose_champion, comparison_table, evaluate
    from retention.policy.lagrangian import LagrangeIndexPolicy
    from retention.policy.model import policy_spec
    from retention.policy.registry import COMPARISON_TABLE, POLICY_MODEL, gate_policies, log_policy, pool_for_split
    from retention.runs import step_run

    client = MlflowClient()
    with step_run("evaluate_policy", cfg, params) as run:
        processed = processed_dir_of(params.get("data_run_id", "none"), cfg)
        pool, versions = pool_for_split(cfg, processed, "test")
        train_pool, _ = pool_for_split(cfg, processed, "train")
        inputs = log_split_inputs(processed, "telco", ("train", "test"))  # lineage: multiplier fit; held-out
        lam, decay = multiplier_and_decay(cfg, train_pool)
        mlflow.set_tags({f"uses.{k}": v for k, v in versions.items()})
        policy_run = params.get("policy_run_id", "none")
        query = f"name='{POLICY_MODEL}' and tags.`policy.kind`='ppo'"
        if policy_run not in ("", "none"):
            query = f"name='{POLICY_MODEL}' and run_id='{policy_run}'"
        found = client.search_model_versions(query, order_by=["version_number DESC"], max_results=1)
        if not found:
            raise RegistryError("no trained PPO policy in the registry; run `retention train_policy` first.")
        ppo_version = found[0]
        ppo = mlflow.pyfunc.load_model(f"models:/{POLICY_MODEL}/{ppo_version.version}").unwrap_python_model().policy
        baselines = all_baselines(cfg.env, cfg.eval.risk_threshold, cfg.eval.threshold_offer)
        index = [LagrangeIndexPolicy(cfg.env, pool, lam=lam, decay=decay),
                 LagrangeIndexPolicy(cfg.env, pool, lam=lam, decay=decay, resolve=True)]
        rules_names = tuple(b.name for b in baselines + index)
        evaluation = evaluate([ppo, *baselines, *index], pool, cfg.env, cfg.eval.campaigns, seed=cfg.eval.seed,
                              chunk=cfg.eval.chunk, subset={"index_resolve": cfg.eval.resolve_campaigns},
                              baselines=rules_names, progress=progress)
        summary = evaluation.summary
        mlflow.log_table(summary.reset_index(names="policy"), "evaluation/summary.json")
        mlflow.log_table(evaluation.per_campaign, "evaluation/per_campaign.json")
        mlflow.log_table(evaluation.paired.reset_index(names="policy"), "evaluation/paired.json")
        mlflow.log_text(summary.round(4).to_csv(), "evaluation/summary.csv")
        # the comparison is a table (and the plot below), not a chart per policy and statistic
        mlflow.log_table(comparison_table(evaluation), COMPARISON_TABLE)
        fig = policy_plots.comparison(summary.drop(index="lp_bound"), bound_name=BOUND)
        mlflow.log_figure(fig, "plots/policy_comparison.png")
        plt.close(fig)

        incumbent = _current_champion_kind(client)
        winner, reason = choose_champion(evaluation, incumbent=incumbent)
        gated = {"ppo": ppo_version.version}
        if winner != "ppo":
            extra = {"risk_threshold": {"threshold": cfg.eval.risk_threshold, "offer": cfg.eval.threshold_offer},
                     "knapsack": {"cutoff": float(next(b for b in baselines if b.name == "knapsack").cutoffs.min())},
                     "index": {"lam": lam, "decay": decay.tolist()},
                     "index_resolve": {"lam": lam, "decay": decay.tolist()}}
            spec = policy_spec(winner, cfg.env, **extra.get(winner, {}))
            info = log_policy(spec, None, {"evaluated_by_run": run.info.run_id})
            gated[winner] = info.registered_model_version
        version = gate_policies(evaluation, winner, reason, gated)
        # one chart per question: how close to the bound are the champion and PPO, and by how much does
        # the champion beat the reference baseline (its interval is in the comparison table)
        headline = {"evaluation/champion_share_of_bound": summary.loc[winner, "share_of_bound_mean"],
                    "evaluation/ppo_share_of_bound": summary.loc["ppo", "share_of_bound_mean"],
                    "evaluation/lambda_star_median": float(np.median(evaluation.multipliers))}
        if winner in evaluation.paired.index:
            headline["evaluation/champion_paired_diff"] = evaluation.paired.loc[winner, "diff"]
        mlflow.log_metrics({k: float(v) for k, v in headline.items() if v == v})
        for name, v in gated.items():  # each version's card: the held-out results of the policy it holds
            row = summary.loc[name]
            write_cards(client, POLICY_MODEL, v, extra={
                "policy": name,
                "held-out net revenue per campaign (mean, 95% CI)":
                    f"{row.get('net_revenue_mean', float('nan')):.1f} [{row.get('net_revenue_lo', float('nan')):.1f}, "
                    f"{row.get('net_revenue_hi', float('nan')):.1f}]",
                "violations per campaign": f"{row.get('violations_mean', float('nan')):.3f}",
                "share of the Lagrangian bound": f"{row.get('share_of_bound_mean', float('nan')):.1%}",
                "evaluated on": f"{inputs['test'].name} ({cfg.eval.campaigns} campaigns)"})
        mlflow.set_tags({"gate.champion_policy": winner, "gate.champion_version": version,
                         "gate.reason": reason[:5000]})
        print("evaluate_policy: held-out campaigns, paired (same cohorts, churners and answers for every policy)")
        print(report(evaluation))
        print(f"evaluate_policy: champion = {winner} (retention-policy v{version}): {reason}")
        return run.info.run_id


CONSTRAINT_SERIES = ("lambda_", "episode_cost_", "cost_limit_")
FLAT_CONSTRAINTS_NOTE = (
    "The Lagrange multipliers stayed at 0 and every episode's constraint cost was 0: the guard masks "
    "every action that would break the budget, fatigue cap or cooldown before PPO can take it, so the "
    "constraints never cost anything and their curves could only be flat (they are not logged). The "
    "constraint still shapes the policy through the mask: which offers it may make and when (see "
    "docs/policy.md, 'Why the multipliers stay at zero').")


def log_constraint_curves(history: list[tuple[int, dict[str, float]]], cfg: Config) -> None:
    """The multipliers' and constraint costs' curves (``constraint/...``), unless they never left zero.

    The limits are constants: they are logged as parameters. When every multiplier and cost stayed at
    0 (the guard masks every infeasible action), no curve is logged and the run's description says why.
    """
    mlflow.log_params({f"cost_limit_{c}": getattr(cfg.ppo, f"cost_limit_{c}")
                       for c in ("budget", "fatigue", "cooldown")})
    moving = any(v != 0 for _, m in history for k, v in m.items() if not k.startswith("cost_limit_") and v == v)
    if not moving:
        mlflow.set_tag("constraint.multipliers", "flat at 0 (the guard masks every infeasible action)")
        describe_run(f"{step_description('train_policy', cfg.profile)}\n\n{FLAT_CONSTRAINTS_NOTE}")
        return
    for step, metrics in history:
        mlflow.log_metrics({f"constraint/{k}": v for k, v in metrics.items()
                            if not k.startswith("cost_limit_") and v == v}, step=step)


__all__ = ["evaluate_policy", "train_policy", "report", "multiplier_and_decay"]

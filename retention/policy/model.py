"""A registered policy: PPO weights or a baseline rule behind one MLflow pyfunc interface.

Input: one row per decision with the observation columns (:data:`OBS_COLUMNS`) and optionally
the guard's mask (``contact_ok``, ``offer_ok_0`` .. ``offer_ok_3``; all allowed when absent).
Output: ``contact`` (0/1), ``offer_level`` (0..3), ``delay_days`` (0..7). The guard is *not*
applied here: serving applies it after the policy (``retention.policy.guard.guard``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from retention.config import EnvConfig
from retention.policy.env import OBS_COLUMNS

MASK_COLUMNS = ("contact_ok", "offer_ok_0", "offer_ok_1", "offer_ok_2", "offer_ok_3")
OUTPUT_COLUMNS = ("contact", "offer_level", "delay_days")


def build_policy(spec: dict[str, Any], weights_path: str | None = None):
    """Rebuild a policy object from its JSON spec (and PPO weights)."""
    from retention.policy import baselines as B

    env = EnvConfig.from_dict(spec["env"])
    kind = spec["kind"]
    if kind == "ppo":
        import torch

        from retention.policy.ppo_lagrangian import Agent, AgentPolicy

        index = bool(spec.get("index_features", False))
        agent = Agent(hidden=spec["hidden"], ltv_months=env.ltv_months, offer_months=env.offer_months,
                      contact_cost=env.contact_cost, n_extra=4 if index else 0,
                      index_prior=float(spec.get("index_prior", 0.0)))
        agent.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        agent.eval()
        if index:
            return AgentPolicy(agent, env=env, lam=spec["lam"], decay=np.asarray(spec["decay"], dtype=float))
        return AgentPolicy(agent)
    if kind == "never_contact":
        return B.NeverContact()
    if kind == "top_offer_everyone":
        return B.TopOfferEveryone()
    if kind == "risk_threshold":
        return B.RiskThreshold(spec["threshold"], spec["offer"])
    if kind == "greedy_ev":
        return B.GreedyExpectedValue(env)
    if kind in ("index", "index_resolve"):
        from retention.policy.lagrangian import LagrangeIndexPolicy

        # Serving decides one customer at a time from its observation (days left, ledger state): the
        # multiplier is the one registered (median lambda* of training cohorts), for both variants.
        return LagrangeIndexPolicy(env, lam=spec["lam"], decay=np.asarray(spec["decay"], dtype=float))
    if kind == "knapsack":
        policy = B.BudgetedKnapsack(env)
        policy.cutoffs = np.array([spec["cutoff"]])
        return policy
    raise ValueError(f"unknown policy kind {kind!r}")


def policy_spec(name: str, env: EnvConfig, **extra: Any) -> dict[str, Any]:
    return {"kind": name, "env": asdict(env), **extra}


class PolicyModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper; artifacts: ``spec`` (JSON) and, for PPO, ``weights`` (torch state dict)."""

    def load_context(self, context) -> None:
        spec = json.loads(Path(context.artifacts["spec"]).read_text())
        self.spec = spec
        self.policy = build_policy(spec, context.artifacts.get("weights"))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return decide(self.policy, model_input)


def decide(policy, frame: pd.DataFrame) -> pd.DataFrame:
    """Run ``policy`` on a frame of observation (+ optional mask) columns."""
    missing = [c for c in OBS_COLUMNS if c not in frame.columns]
    if missing:
        from retention.errors import InputError

        raise InputError({c: "missing column" for c in missing})
    obs = frame[list(OBS_COLUMNS)].to_numpy(dtype=np.float32)
    n = len(frame)
    contact_ok = frame["contact_ok"].to_numpy(dtype=bool) if "contact_ok" in frame else np.ones(n, bool)
    offer_ok = np.column_stack([
        frame[c].to_numpy(dtype=bool) if c in frame else np.ones(n, bool) for c in MASK_COLUMNS[1:]
    ])
    actions = policy.act(obs, contact_ok, offer_ok)
    return pd.DataFrame(np.asarray(actions, dtype=np.int64), columns=list(OUTPUT_COLUMNS), index=frame.index)

"""Model registry: the promotion gate, aliases ``champion`` / ``challenger``, verdict tags.

The gate is a pure function (:func:`gate`); :func:`promote_version` applies its verdict to a
registered model version and records metric values, thresholds and the reasons as tags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from retention.config import GateConfig

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Thresholds:
    """Absolute requirements: AUC at least ``min_auc``, ECE at most ``max_ece``."""

    min_auc: float
    max_ece: float


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def alias(self) -> str:
        return CHAMPION if self.promote else CHALLENGER


def thresholds_for(model_name: str, gate_cfg: GateConfig) -> Thresholds:
    if model_name == "churn-risk":
        return Thresholds(gate_cfg.risk_min_auc, gate_cfg.risk_max_ece)
    if model_name == "offer-accept":
        return Thresholds(gate_cfg.accept_min_auc, gate_cfg.accept_max_ece)
    raise KeyError(f"no gate thresholds for model '{model_name}'")


def gate(
    candidate: dict[str, float],
    thresholds: Thresholds,
    champion: dict[str, float] | None = None,
    tolerance: float = 0.0,
) -> Verdict:
    """Decide whether ``candidate`` (test metrics ``roc_auc`` and ``ece``) may be champion.

    It must meet the absolute thresholds and, if a champion exists, be no worse than it
    beyond ``tolerance``: AUC >= champion AUC - tolerance and ECE <= champion ECE + tolerance.
    """
    reasons = []
    auc, ece = candidate["roc_auc"], candidate["ece"]
    if not auc >= thresholds.min_auc:
        reasons.append(f"test AUC {auc:.4f} < required {thresholds.min_auc:.4f}")
    if not ece <= thresholds.max_ece:
        reasons.append(f"test ECE {ece:.4f} > allowed {thresholds.max_ece:.4f}")
    if champion is not None:
        if auc < champion["roc_auc"] - tolerance:
            reasons.append(
                f"test AUC {auc:.4f} worse than champion's {champion['roc_auc']:.4f} beyond tolerance {tolerance}"
            )
        if ece > champion["ece"] + tolerance:
            reasons.append(
                f"test ECE {ece:.4f} worse than champion's {champion['ece']:.4f} beyond tolerance {tolerance}"
            )
    return Verdict(promote=not reasons, reasons=reasons)


def champion_version(client: MlflowClient, model_name: str):
    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


def promote_version(
    client: MlflowClient,
    model_name: str,
    version: str,
    candidate: dict[str, float],
    thresholds: Thresholds,
    tolerance: float,
    champion_metrics_key: str = "test_calibrated_",
) -> Verdict:
    """Gate ``version`` against thresholds and the current champion; set alias and tags."""
    current = champion_version(client, model_name)
    champion_metrics = None
    if current is not None and current.version != str(version):
        run = client.get_run(current.run_id)
        champion_metrics = {
            "roc_auc": run.data.metrics[f"{champion_metrics_key}roc_auc"],
            "ece": run.data.metrics[f"{champion_metrics_key}ece"],
        }
    verdict = gate(candidate, thresholds, champion_metrics, tolerance)
    client.set_registered_model_alias(model_name, verdict.alias, str(version))
    tags: dict[str, Any] = {
        "gate.verdict": "promoted" if verdict.promote else "rejected",
        "gate.reasons": "; ".join(verdict.reasons) or "meets every threshold",
        "gate.test_roc_auc": f"{candidate['roc_auc']:.4f}",
        "gate.test_ece": f"{candidate['ece']:.4f}",
        "gate.min_auc": str(thresholds.min_auc),
        "gate.max_ece": str(thresholds.max_ece),
        "gate.tolerance": str(tolerance),
        "gate.compared_to": f"version {current.version}" if champion_metrics else "no champion",
    }
    if champion_metrics:
        tags["gate.champion_metrics"] = json.dumps({k: round(v, 4) for k, v in champion_metrics.items()})
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, value)
    return verdict


def gate_generator(metrics: dict[str, float], min_pass_rate: float, min_factual: float) -> Verdict:
    """Message-generator gate on held-out raw generations (before any fallback)."""
    reasons = []
    if not metrics["shield_pass_rate"] >= min_pass_rate:
        reasons.append(f"shield pass rate {metrics['shield_pass_rate']:.3f} < required {min_pass_rate}")
    if not metrics["factual_accuracy"] >= min_factual:
        reasons.append(f"factual accuracy {metrics['factual_accuracy']:.3f} < required {min_factual}")
    return Verdict(promote=not reasons, reasons=reasons)


@dataclass(frozen=True)
class GeneratorThresholds:
    """What a PPO-text version of ``message-generator`` needs to become ``champion``.

    Attributes
    ----------
    min_win_rate:
        Gold-judge win rate over the SFT generator (ties one half).
    min_win_lower:
        The lower end of that win rate's 95 % interval must be **above** this.
    min_pass_rate:
        Shield pass rate before fallback on held-out prompts.
    min_factual:
        Factual accuracy on held-out prompts.
    max_kl:
        KL to the SFT generator, nats per message (must be **below** it).
    """

    min_win_rate: float
    min_win_lower: float
    min_pass_rate: float
    min_factual: float
    max_kl: float


def generator_thresholds(gate_cfg: GateConfig) -> GeneratorThresholds:
    """The PPO-text gate's thresholds from ``gate.ppo_*`` and ``gate.generator_min_factual``."""
    return GeneratorThresholds(gate_cfg.ppo_min_win_rate, gate_cfg.ppo_min_win_lower, gate_cfg.ppo_min_pass_rate,
                               gate_cfg.generator_min_factual, gate_cfg.ppo_max_kl)


GENERATOR_METRICS = ("gold_win_rate", "gold_win_rate_low", "shield_pass_rate", "factual_accuracy", "kl_to_sft")


def generator_gate(metrics: dict[str, float], thresholds: GeneratorThresholds) -> tuple[bool, list[str]]:
    """Whether a PPO-text generator may be ``champion``, and every reason it may not.

    ``metrics`` holds ``gold_win_rate`` and ``gold_win_rate_low`` (over SFT, on held-out prompts),
    ``shield_pass_rate`` (before fallback), ``factual_accuracy`` and ``kl_to_sft``. A missing or NaN
    metric fails its check.
    """
    missing = [k for k in GENERATOR_METRICS if k not in metrics]
    if missing:
        return False, [f"missing metric(s) {missing}"]
    m, t = metrics, thresholds
    reasons = []
    if not m["gold_win_rate"] >= t.min_win_rate:
        reasons.append(f"gold win rate over SFT {m['gold_win_rate']:.3f} < required {t.min_win_rate}")
    if not m["gold_win_rate_low"] > t.min_win_lower:
        reasons.append(f"gold win rate 95% lower bound {m['gold_win_rate_low']:.3f} not above {t.min_win_lower}")
    if not m["shield_pass_rate"] >= t.min_pass_rate:
        reasons.append(f"shield pass rate before fallback {m['shield_pass_rate']:.3f} < required {t.min_pass_rate}")
    if not m["factual_accuracy"] >= t.min_factual:
        reasons.append(f"factual accuracy {m['factual_accuracy']:.3f} < required {t.min_factual}")
    if not m["kl_to_sft"] < t.max_kl:
        reasons.append(f"KL to SFT {m['kl_to_sft']:.2f} nats not under the limit {t.max_kl}")
    return not reasons, reasons

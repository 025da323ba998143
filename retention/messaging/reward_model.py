"""Reward models: the base LM with a scalar head and a LoRA adapter, trained on preference pairs.

Training is TRL's ``RewardTrainer`` with the Bradley–Terry loss (:func:`bt_loss` is the same loss as
a pure function)::

    loss = -mean(log sigmoid(r(x, y_chosen) - r(x, y_rejected)))

plus TRL's optional centring term ``c · mean((r_c + r_r)^2)``. The score head trains in full
(``modules_to_save=["score"]``), the trunk through LoRA. ``RewardTrainer`` **drops** every pair whose
chosen or rejected sequence is longer than ``max_length`` (it does not truncate them):
:func:`train_reward_model` reports how many it dropped, per source.

A reward model's raw scores have an arbitrary offset and scale. :func:`normalisation` picks a gain
and bias so that the SFT generator's own samples score mean 0, std 1::

    r_norm = gain · r_raw + bias,   gain = 1 / std(r_sft),   bias = -mean(r_sft) / std(r_sft)

They are stored with the model (:class:`RewardModelPyfunc`), so PPO-text's penalties are in units of
"SFT standard deviations". Hardware settings are the SFT step's (:func:`retention.messaging.sft.training_settings`):
bf16 only where it is fast, no gradient checkpointing.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from torch import nn

from retention.messaging.preferences import reply, reward_prompt
from retention.messaging.prompts import MessageFacts, facts_from_record
from retention.messaging.sft import LossLogger, machine_args, quiet_trainer

INPUT_COLUMNS = ("name", "tenure", "MonthlyCharges", "InternetService", "Contract", "offer_pct", "message")
REQUIRED_COLUMNS = ("name", "offer_pct", "message")


def bt_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None) -> torch.Tensor:
    """Bradley–Terry loss of scalar rewards: ``-mean(log sigmoid(chosen - rejected - margin))``.

    Parameters
    ----------
    chosen, rejected:
        Rewards of the preferred and the other response, shape ``(n,)``.
    margin:
        Optional required margin per pair (TRL's ``margin`` column).
    """
    diff = chosen - rejected if margin is None else chosen - rejected - margin
    return -nn.functional.logsigmoid(diff).mean()


def normalisation(raw_scores: Sequence[float]) -> tuple[float, float]:
    """``(gain, bias)`` so that ``gain * raw_scores + bias`` has mean 0 and standard deviation 1.

    Raises ``ValueError`` for fewer than two scores; a zero spread gives gain 1 (only the offset is removed).
    """
    scores = np.asarray(raw_scores, dtype=float)
    if scores.size < 2 or not np.all(np.isfinite(scores)):
        raise ValueError(f"normalisation needs at least 2 finite scores, got {scores.size}: raise "
                         "reward.normalisation_samples.")
    std = float(scores.std())
    gain = 1.0 / std if std > 1e-8 else 1.0
    return gain, -float(scores.mean()) * gain


def reward_backbone(base_model: str, cache_dir: str | Path | None = None, seed: int = 0):
    """``(model, tokenizer)``: the base LM's trunk under a fresh scalar head (``num_labels=1``).

    Built in memory from :func:`~retention.messaging.base_model.load_base_model` (so the tiny test
    model works too); the head is initialised from ``seed``.
    """
    from transformers import AutoModelForSequenceClassification

    from retention.messaging.base_model import load_base_model

    lm, tok = load_base_model(base_model, cache_dir)
    config = copy.deepcopy(lm.config)
    config.num_labels = 1
    config.pad_token_id = tok.pad_token_id
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    getattr(model, model.base_model_prefix).load_state_dict(getattr(lm, lm.base_model_prefix).state_dict())
    model.config.pad_token_id = tok.pad_token_id
    tok.padding_side = "right"
    return model, tok


def _sequence_ids(tokenizer, prompt: list[dict], response: str) -> list[int]:
    """Token ids of prompt + reply, rendered exactly as ``RewardTrainer`` renders a conversational pair."""
    return tokenizer.apply_chat_template(list(prompt) + reply(response), tokenize=True, return_dict=True)["input_ids"]


def fitted_prompt(tokenizer, prompt: list[dict], responses: Sequence[str], max_length: int | None) -> list[dict]:
    """``prompt`` keeping the **final turns** of a dialogue too long for ``max_length`` with every one of
    ``responses``: the earliest exchange (a user turn and its answer) goes first, then the next, down
    to the last user turn; a system prompt stays. A pair's chosen and rejected replies are fitted
    together, so both are judged after the same context. What still does not fit is returned as far
    as it was trimmed (the caller drops it)."""
    head = list(prompt[:1]) if prompt and prompt[0].get("role") == "system" else []  # a system prompt stays
    body = list(prompt[len(head):])

    def too_long() -> bool:
        return max_length is not None and max(len(_sequence_ids(tokenizer, head + body, r)) for r in responses) > \
            max_length

    while len(body) > 1 and too_long():
        body = body[2:] if len(body) > 2 else body[1:]
    return head + body


def _fitted_ids(tokenizer, prompt: list[dict], response: str, max_length: int | None) -> list[int]:
    """:func:`_sequence_ids` after :func:`fitted_prompt` for this one response."""
    return _sequence_ids(tokenizer, fitted_prompt(tokenizer, prompt, [response], max_length), response)


@torch.no_grad()
def score(model, tokenizer, prompts: Sequence[list[dict]], responses: Sequence[str], batch_size: int = 16,
          max_length: int | None = None) -> np.ndarray:
    """Raw rewards of (prompt, response) pairs, batched. ``prompts`` are chat messages.

    With ``max_length``, a dialogue too long keeps its final turns (:func:`_fitted_ids`); a sequence
    still longer than it (a long last turn or reply) scores NaN, what ``RewardTrainer`` would drop.
    """
    ids = [_fitted_ids(tokenizer, p, r, max_length) for p, r in zip(prompts, responses, strict=True)]
    out = np.full(len(ids), np.nan)
    keep = [i for i, seq in enumerate(ids) if max_length is None or len(seq) <= max_length]
    keep.sort(key=lambda i: len(ids[i]))  # similar lengths together: less padding
    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    model.eval()
    for lo in range(0, len(keep), batch_size):
        rows = keep[lo:lo + batch_size]
        width = max(len(ids[i]) for i in rows)
        input_ids = torch.tensor([ids[i] + [pad] * (width - len(ids[i])) for i in rows], device=device)
        mask = torch.tensor([[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in rows], device=device)
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        out[rows] = logits[:, 0].float().cpu().numpy()
    return out


def pairwise_accuracy(model, tokenizer, pairs: pd.DataFrame, batch_size: int = 16,
                      max_length: int | None = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """Score chosen and rejected of each pair; per-pair results and accuracy per source and per family.

    Returns
    -------
    rows:
        ``pairs`` without the message columns, plus ``reward_chosen``, ``reward_rejected``,
        ``correct`` (chosen scored higher) and ``dropped`` (longer than ``max_length``, not scored).
    summary:
        ``accuracy`` (over scored pairs), ``accuracy_<source>``, ``accuracy_<source>_<family>``,
        ``pairs_scored`` and ``pairs_dropped``.
    """
    good, bad = [m[-1]["content"] for m in pairs["chosen"]], [m[-1]["content"] for m in pairs["rejected"]]
    # one context per pair: a long dialogue is trimmed until both replies fit, then each is scored after it
    prompts = [fitted_prompt(tokenizer, p, [c, r], max_length) for p, c, r in zip(pairs["prompt"], good, bad,
                                                                                  strict=True)]
    chosen = score(model, tokenizer, prompts, good, batch_size, max_length)
    rejected = score(model, tokenizer, prompts, bad, batch_size, max_length)
    rows = pairs.drop(columns=["prompt", "chosen", "rejected"]).copy()
    rows["reward_chosen"], rows["reward_rejected"] = chosen, rejected
    rows["dropped"] = np.isnan(chosen) | np.isnan(rejected)
    rows["correct"] = (chosen > rejected) & ~rows["dropped"]
    scored = rows[~rows["dropped"]]
    summary = {"accuracy": float(scored["correct"].mean()) if len(scored) else float("nan"),
               "pairs_scored": float(len(scored)), "pairs_dropped": float(rows["dropped"].sum())}
    for source, group in scored.groupby("source"):
        summary[f"accuracy_{source}"] = float(group["correct"].mean())
        for family, sub in group.groupby("family"):
            summary[f"accuracy_{source}_{family}"] = float(sub["correct"].mean())
    return rows, summary


@dataclass
class RewardTrainingResult:
    """A trained reward model (a ``PeftModel``), what training kept and dropped, and its loss history."""

    model: object
    tokenizer: object
    kept: dict[str, int] = field(default_factory=dict)  # pairs trained on, per source
    dropped: dict[str, int] = field(default_factory=dict)  # pairs RewardTrainer dropped (too long), per source
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    trainable_params: int = 0


def train_reward_model(model, tokenizer, pairs: pd.DataFrame, cfg, settings: dict[str, object], max_steps: int,
                       log: Callable[[dict[str, float], int], None] | None = None,
                       progress: bool = True) -> RewardTrainingResult:
    """Train ``model`` (from :func:`reward_backbone`) on ``pairs`` with TRL's ``RewardTrainer`` and LoRA.

    Parameters
    ----------
    pairs:
        Conversational pairs (:func:`retention.messaging.preferences.pairs_dataset` columns).
    cfg:
        A :class:`retention.config.RewardModelConfig`.
    settings:
        :func:`retention.messaging.sft.training_settings` of the messaging config (dtype, threads).
    max_steps:
        Optimiser steps (``cfg.max_steps`` for the proxy, ``cfg.gold_max_steps`` for the gold model).
    """
    from peft import LoraConfig
    from trl import RewardConfig, RewardTrainer

    from retention.messaging.preferences import pairs_dataset

    if pairs.empty:
        from retention.errors import ConfigError

        raise ConfigError("no preference pairs to train a reward model on: raise reward.domain_pairs.")
    torch.set_num_threads(int(settings["torch_threads"]))
    targets = [t.strip() for t in cfg.lora_target_modules.split(",") if t.strip()]
    peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                             target_modules=targets, task_type="SEQ_CLS", modules_to_save=["score"])
    history: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as out:
        args = RewardConfig(
            output_dir=out,
            max_steps=max_steps,
            per_device_train_batch_size=cfg.per_device_train_batch_size,
            learning_rate=cfg.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=max(1, max_steps // 20),
            logging_steps=max(1, max_steps // 20),
            max_length=cfg.max_length,
            center_rewards_coefficient=cfg.center_rewards_coefficient,
            **machine_args(settings, cfg.seed, progress),
        )
        trainer = RewardTrainer(model=model, args=args, train_dataset=pairs_dataset(pairs), processing_class=tokenizer,
                                peft_config=peft_config, callbacks=[LossLogger(log, history)])
        kept = Counter(trainer.train_dataset["source"])
        dropped = Counter(pairs["source"]) - kept
        if not kept:
            from retention.errors import ConfigError

            raise ConfigError(f"reward.max_length={cfg.max_length} drops every preference pair; raise it.")
        start = time.perf_counter()
        quiet_trainer(trainer)
        trainer.train()
        seconds = time.perf_counter() - start
    peft_model = trainer.model
    peft_model.eval()
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    return RewardTrainingResult(peft_model, tokenizer, dict(kept), {k: int(v) for k, v in dropped.items()}, history,
                                seconds, trainable)


class RewardScorer:
    """A reward model with its normalisation, as PPO-text and the judge use it.

    Parameters
    ----------
    model, tokenizer:
        The reward model (a ``PeftModel`` over a sequence-classification LM) and its tokenizer.
    gain, bias:
        Normalisation (:func:`normalisation`): ``gain · raw + bias``.
    batch_size:
        Sequences per forward pass.
    """

    def __init__(self, model, tokenizer, gain: float = 1.0, bias: float = 0.0, batch_size: int = 16):
        self.model = model
        self.tokenizer = tokenizer
        self.gain = gain
        self.bias = bias
        self.batch_size = batch_size

    def raw(self, facts: Sequence[MessageFacts], texts: Sequence[str]) -> np.ndarray:
        """Raw scores of messages for their decisions."""
        return score(self.model, self.tokenizer, [reward_prompt(f) for f in facts], texts, self.batch_size)

    def __call__(self, facts: Sequence[MessageFacts], texts: Sequence[str]) -> np.ndarray:
        """Normalised scores (a ``reward_fn`` for :func:`retention.messaging.ppo_text.train_ppo_text`)."""
        return self.gain * self.raw(facts, texts) + self.bias


def save_reward_model(model, spec: dict, folder: Path) -> dict[str, str]:
    """Write the adapter (with the score head) and the spec JSON under ``folder``; return pyfunc artifacts."""
    folder.mkdir(parents=True, exist_ok=True)
    adapter = folder / "adapter"
    model.save_pretrained(adapter)
    spec_path = folder / "reward_model.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    return {"adapter": str(adapter), "spec": str(spec_path)}


def load_scorer(adapter: str | Path, spec: dict) -> RewardScorer:
    """A :class:`RewardScorer` from a saved adapter and its spec (``base_model``, ``gain``, ``bias`` ...)."""
    from peft import PeftModel

    backbone, tok = reward_backbone(spec["base_model"], None)  # the model cache of this machine
    model = PeftModel.from_pretrained(backbone, str(adapter))
    model.eval()
    return RewardScorer(model, tok, float(spec["gain"]), float(spec["bias"]), int(spec.get("score_batch_size", 16)))


class RewardModelPyfunc(mlflow.pyfunc.PythonModel):
    """The registered ``reward-model``: scores (decision, message) rows.

    Input rows carry the message-generator's input columns (``name``, ``tenure``, ``MonthlyCharges``,
    ``InternetService``, ``Contract``, ``offer_pct``) and ``message``. Output: ``reward`` (normalised:
    SFT samples score mean 0, std 1) and ``raw_reward``. The artifact holds the LoRA adapter with the
    score head; the base model is rebuilt as for the generator.
    """

    def load_context(self, context: Any) -> None:
        self.spec = json.loads(Path(context.artifacts["spec"]).read_text())
        self.scorer = load_scorer(context.artifacts["adapter"], self.spec)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        missing = [c for c in REQUIRED_COLUMNS if c not in model_input.columns]
        if missing:
            raise ValueError(f"reward-model input lacks column(s) {missing}; it takes {list(INPUT_COLUMNS)} "
                             f"(the others may be absent)")
        records = model_input.to_dict("records")
        facts = [facts_from_record(r, int(r.get("offer_pct", 0) or 0)) for r in records]
        texts = [str(r.get("message") or "") for r in records]
        raw = self.scorer.raw(facts, texts) if records else np.array([])
        return pd.DataFrame({"reward": self.scorer.gain * raw + self.scorer.bias, "raw_reward": raw},
                            index=model_input.index)

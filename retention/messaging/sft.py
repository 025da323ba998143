"""Supervised fine-tuning with LoRA, via TRL's ``SFTTrainer``.

The dataset is conversational prompt/completion (:mod:`retention.messaging.sft_data`), so the
loss is on the assistant reply only (TRL's ``completion_only_loss``). The chat template of the
base model renders both. Only the LoRA adapter trains. With ``log_to_mlflow`` the losses go to the
active MLflow run through transformers' own ``MLflowCallback`` (:class:`StepRunMLflowCallback`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlflow
import torch
from transformers import TrainerCallback, TrainerState, TrainingArguments
from transformers.integrations import MLflowCallback

from retention.config import MessagingConfig
from retention.hardware import resolve_dtype, resolve_threads
from retention.messaging.base_model import add_lora
from retention.tracking import environment


class LossLogger(TrainerCallback):
    """Hands the trainer's numeric logs (loss, grad norm, learning rate) to ``sink`` and keeps a history.

    Used where one run holds several trainings: the ``train_reward`` step trains the proxy and the gold
    reward model in one run and logs each under its role's prefix (``proxy/loss``, ``gold/loss``).
    transformers' ``MLflowCallback`` logs unprefixed names (``loss``), so the two would be one series.
    A single training (SFT) uses :class:`StepRunMLflowCallback` instead.
    """

    def __init__(self, sink: Callable[[dict[str, float], int], None] | None, history: list[dict[str, float]]):
        self.sink, self.history = sink, history

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
        if logs:
            self.history.append({"step": state.global_step, **logs})
            if self.sink is not None:
                self.sink(logs, state.global_step)


class StepRunMLflowCallback(MLflowCallback):
    """transformers' ``MLflowCallback`` (``loss``, ``grad_norm``, ``learning_rate``, TRL's token accuracy
    and the final ``train_*`` figures, per step), logging into the step's active run.

    Two settings differ from ``report_to="mlflow"``, both through the callback's documented
    environment variables and only while it sets itself up:

    * ``MLFLOW_RUN_ID`` and ``MLFLOW_NESTED_RUN`` are hidden. Under ``mlflow run`` the first names
      the step's run, which is already active; the stock callback would call ``start_run`` again
      (MLflow refuses: the run is active) and, having started a run, end it when training ends.
      Without them, the callback finds the active run, logs into it and leaves it open (there must
      be one).
    * ``MLFLOW_MAX_LOG_PARAMS=0``: the ~200 ``TrainingArguments`` and model-config fields are not
      logged as params. The step logs its own configuration; the trainer's fields would repeat some of
      its keys (``learning_rate``, ``seed``) and MLflow refuses a param logged twice with another value.
    """

    def setup(self, args: TrainingArguments, state: TrainerState, model: Any) -> None:
        if mlflow.active_run() is None:
            raise RuntimeError("StepRunMLflowCallback logs into the active MLflow run; start one first")
        with environment(MLFLOW_RUN_ID=None, MLFLOW_NESTED_RUN=None, MLFLOW_MAX_LOG_PARAMS="0"):
            super().setup(args, state, model)


@dataclass
class SFTResult:
    model: object  # PeftModel
    tokenizer: object
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    trainable_params: int = 0
    settings: dict[str, object] = field(default_factory=dict)  # training_settings(cfg)


def training_settings(cfg: MessagingConfig) -> dict[str, object]:
    """Hardware settings of a training run: TRL's ``bf16`` / ``fp16`` / ``gradient_checkpointing``, and threads.

    TRL's ``SFTConfig`` defaults to ``bf16=True`` and ``gradient_checkpointing=True``; both are set
    here from ``cfg.train_dtype`` (:func:`retention.hardware.resolve_dtype`) and
    ``cfg.gradient_checkpointing``. ``torch_threads`` is ``cfg.torch_threads`` resolved
    (``0`` = every core the process may use).
    """
    dtype = resolve_dtype(cfg.train_dtype, "messaging.train_dtype")
    return {"bf16": dtype == torch.bfloat16, "fp16": False, "gradient_checkpointing": cfg.gradient_checkpointing,
            "torch_threads": resolve_threads(cfg.torch_threads, "messaging.torch_threads")}


def machine_args(settings: dict, seed: int, progress: bool) -> dict:
    """The trainer arguments every LM training here shares (SFT, reward models): precision from
    :func:`training_settings`, the CPU when there is no CUDA, no checkpoints saved, no reporting."""
    return {"bf16": bool(settings["bf16"]), "fp16": False,
            "activation_checkpointing": bool(settings["gradient_checkpointing"]), "save_strategy": "no",
            "report_to": "none", "seed": seed, "use_cpu": not torch.cuda.is_available(),
            "dataloader_num_workers": 0, "disable_tqdm": not progress}


def quiet_trainer(trainer) -> None:
    """No raw log dicts on the console (transformers prints every log as a dict of strings when its
    bars are off): the step logs its metrics to MLflow and prints one summary line instead."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def train_sft(model, tokenizer, dataset, cfg: MessagingConfig, log_to_mlflow: bool = False,
              progress: bool = True, callbacks: list[TrainerCallback] | None = None) -> SFTResult:
    """Fine-tune ``model`` (a base causal LM) with a LoRA adapter on ``dataset``.

    Parameters
    ----------
    model, tokenizer
        The base causal LM and its tokenizer (:func:`retention.messaging.base_model.load_base_model`).
    dataset
        Conversational prompt/completion rows (:func:`retention.messaging.sft_data.sft_dataset`).
    cfg
        LoRA, optimiser and precision settings.
    log_to_mlflow
        Log the trainer's metrics to the active MLflow run (:class:`StepRunMLflowCallback`).
    progress
        Draw the trainer's progress bar.
    callbacks
        More trainer callbacks (the SFT benchmark times steps with a :class:`LossLogger`).

    Returns
    -------
    SFTResult
        The adapted model; ``history`` is the trainer's own log history.
    """
    from trl import SFTConfig, SFTTrainer

    settings = training_settings(cfg)
    torch.set_num_threads(settings["torch_threads"])
    torch.manual_seed(cfg.seed)
    peft_model = add_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    tokenizer.padding_side = "right"  # training pads on the right; generation switches back to left
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(
            output_dir=out,
            max_steps=cfg.max_steps,
            per_device_train_batch_size=cfg.per_device_train_batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            learning_rate=cfg.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=max(1, cfg.max_steps // 20),
            logging_steps=max(1, cfg.max_steps // 30),
            max_length=cfg.max_length,
            completion_only_loss=True,
            **machine_args(settings, cfg.seed, progress),
        )
        trainer = SFTTrainer(model=peft_model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             callbacks=[*([StepRunMLflowCallback()] if log_to_mlflow else []), *(callbacks or [])])
        start = time.perf_counter()
        quiet_trainer(trainer)
        trainer.train()
        seconds = time.perf_counter() - start
        history = [{k: float(v) for k, v in row.items() if isinstance(v, int | float)}
                   for row in trainer.state.log_history]
    tokenizer.padding_side = "left"
    peft_model.eval()
    return SFTResult(peft_model, tokenizer, history, seconds, trainable, settings)

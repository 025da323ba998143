"""Evaluation harness for message generators (base, SFT, and later PPO or a win-rate judge).

:func:`evaluate_messages` takes any ``generate(facts_list) -> texts`` function and held-out cases,
then reports:

* **shield pass rate before fallback**: share of raw generations that pass every shield rule;
* **factual accuracy**: share that address the customer by the right name (when one is known),
  state the decision's offer exactly once, and promise nothing else: no other quantity, money
  amount or benefit (see :func:`factual`);
* **length distribution**: mean, p10/p50/p90, share within 50–200 characters;
* **distinct-1/2**: unique uni-/bi-grams over all generations (diversity);

plus a samples table. Generation itself (:func:`generate_batch`) is batched, greedy or sampled with a
seed per prompt (:class:`~retention.messaging.sampling.Sampling`), and stops at the chat template's end-of-turn token.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from retention.messaging.prompts import MessageFacts, render_prompt
from retention.messaging.sampling import GREEDY, Sampling, prompt_seed
from retention.messaging.shield import FACT_RULES, Shield, default_shield, normalise

Generate = Callable[[Sequence[MessageFacts]], list[str]]


MIN_SHARED_PREFIX = 8  # tokens; below this, computing the prefix once is not worth it


def banned_block(banned: torch.Tensor, width: int, device) -> torch.Tensor:
    """A vocabulary mask (``forbidden_tokens``) fitted to ``width`` logits on ``device``: cut, or padded
    with allowed ids (a model's logits can be wider than its tokenizer)."""
    block = torch.zeros(width, dtype=torch.bool, device=device)
    keep = min(len(banned), width)
    block[:keep] = banned[:keep].to(device)
    return block


def shared_prefix_ids(tokenized: Sequence[Sequence[int]]) -> list[int]:
    """The longest run of leading token ids common to every prompt (the system prompt, mostly)."""
    if not tokenized:
        return []
    first, n = tokenized[0], min(len(t) for t in tokenized)
    length = 0
    while length < n - 1 and all(t[length] == first[length] for t in tokenized):  # keep >= 1 token per prompt
        length += 1
    return list(first[:length])


def generate_batch(model, tokenizer, facts: Sequence[MessageFacts], max_new_tokens: int, batch_size: int,
                   progress: bool = False, share_prefix: bool = True, banned: torch.Tensor | None = None,
                   sampling: Sampling = GREEDY) -> list[str]:
    """Generation for each case, batched, left-padded, stopping at the end-of-turn token.

    With ``share_prefix``, the prompts' common leading tokens (the system prompt and the template's
    opening, about half of each prompt) go through the model once. Their key/value cache is
    copied into every batch, and each prompt's own tokens are left-padded *after* that prefix.
    Positions come from the attention mask, so this computes what the unshared prompts would.
    Decoding is :func:`greedy_decode`, which drops each sequence from the batch when it ends;
    ``banned`` (a boolean mask over the vocabulary) are tokens it may never choose. With a sampling
    ``sampling``, each prompt's draws are seeded by its tokens and facts (:func:`prompt_seed`).
    """
    from tqdm.auto import tqdm
    from transformers import DynamicCache

    tokenizer.padding_side = "left"
    eos = [t for t in {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")} if t is not None]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    tokenized = [tokenizer(render_prompt(tokenizer, f), add_special_tokens=False)["input_ids"] for f in facts]
    prefix = shared_prefix_ids(tokenized) if share_prefix and len(tokenized) > 1 else []
    if len(prefix) < MIN_SHARED_PREFIX:
        prefix = []
    device = next(model.parameters()).device
    model.eval()
    prefix_cache = None
    if prefix:
        prefix_cache = DynamicCache()
        with torch.no_grad():
            model(input_ids=torch.tensor([prefix], device=device), cache=prefix_cache, use_cache=True)
    out: list[str] = []
    for lo in tqdm(range(0, len(tokenized), batch_size), desc="generate", disable=not progress):
        own = [t[len(prefix):] for t in tokenized[lo:lo + batch_size]]
        width = max(len(t) for t in own)
        ids = torch.tensor([[pad] * (width - len(t)) + list(t) for t in own], device=device)
        mask = torch.tensor([[1] * len(prefix) + [0] * (width - len(t)) + [1] * len(t) for t in own], device=device)
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(own))
        seeds = [prompt_seed(t, f) for t, f in zip(tokenized[lo:lo + batch_size], facts[lo:lo + batch_size],
                                                   strict=True)]
        for row in greedy_decode(model, ids, mask, cache, max_new_tokens, eos, banned, sampling, seeds):
            out.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return out


@torch.no_grad()
def greedy_decode(model, ids: torch.Tensor, mask: torch.Tensor, cache, max_new_tokens: int,
                  eos: Sequence[int], banned: torch.Tensor | None = None, sampling: Sampling = GREEDY,
                  seeds: Sequence[int] | None = None) -> list[list[int]]:
    """Greedy (or seeded sampled) decoding that **drops each sequence from the batch when it ends**.

    ``ids`` are the (left-padded) tokens not yet in ``cache``; ``mask`` covers the cached prefix
    and ``ids``. Positions come from the mask, as in ``generate``. A finished row stops costing
    anything: its key/value cache rows are removed (``DynamicCache.batch_select_indices``), so a
    batch of short and long messages runs as fast as its remaining rows. Returns the new tokens of
    each row, without the end-of-turn token; greedy, the same tokens ``model.generate(do_sample=False)``
    writes.
    ``banned`` tokens (a boolean mask over the vocabulary) get a score of minus infinity: never chosen.

    With a sampling ``sampling``, row ``i`` draws with its own ``torch.Generator`` seeded by
    ``seeds[i]`` (required): the exponential race ``argmax(p / E)``, ``E ~ Exp(1)``, which picks
    token ``t`` with probability ``p_t``, over the ``top_k`` most likely allowed tokens at
    ``temperature``. A row's draws do not depend on the rest of its batch; its logits do only by
    rounding (none in float32 on the tests' model; in bfloat16 padding can change a close draw).
    """
    from transformers import DynamicCache

    cache = cache if cache is not None else DynamicCache()
    stop = torch.tensor(list(eos), device=ids.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    n = ids.shape[0]
    alive = torch.arange(n, device=ids.device)
    out: list[list[int]] = [[] for _ in range(n)]
    step_ids, step_pos = ids, positions[:, -ids.shape[1]:]
    block = None
    generators = None
    if not sampling.greedy:
        if seeds is None or len(seeds) != n:
            raise ValueError("sampled decoding needs one seed per row (see prompt_seed)")
        generators = [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]
    for _ in range(max_new_tokens):
        logits = model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos, cache=cache, use_cache=True,
                       logits_to_keep=1).logits[:, -1, :]
        if banned is not None:
            if block is None:
                block = banned_block(banned, logits.shape[-1], logits.device)
            logits = logits.masked_fill(block, float("-inf"))
        if generators is None:
            token = logits.argmax(dim=-1)
        else:
            token = _sample(logits, sampling, [generators[i] for i in alive.tolist()])
        done = torch.isin(token, stop)
        for row, tok, fin in zip(alive.tolist(), token.tolist(), done.tolist(), strict=True):
            if not fin:
                out[row].append(tok)
        keep = (~done).nonzero().flatten()
        if keep.numel() == 0:
            break
        if keep.numel() < alive.numel():
            cache.batch_select_indices(keep)
            alive, token, mask, step_pos = alive[keep], token[keep], mask[keep], step_pos[keep]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        step_ids, step_pos = token[:, None], step_pos[:, -1:] + 1
    return out


def _sample(logits: torch.Tensor, sampling: Sampling, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One token per row: the ``top_k`` best (all, when 0) at the temperature, drawn with that row's
    generator. Only the k candidates' probabilities reach the host, and each row draws k numbers."""
    scores = logits.float() / sampling.temperature
    if 0 < sampling.top_k < scores.shape[-1]:
        scores, index = scores.topk(sampling.top_k, dim=-1)
    else:
        index = None
    probs = torch.softmax(scores, dim=-1).cpu()
    race = torch.stack([torch.empty(probs.shape[-1], device="cpu").exponential_(generator=g) for g in generators])
    choice = (probs / race).argmax(dim=-1).to(logits.device)
    return choice if index is None else index.gather(-1, choice[:, None]).squeeze(-1)


def factual(text: str, facts: MessageFacts, shield: Shield | None = None) -> bool:
    """States what the decision decided and nothing more: the right name (when known), the offer
    exactly once, and no other quantity, money amount or benefit (the shield's ``FACT_RULES``).

    A message that promises "24 months of free service" on a 0 % check-in is not factual, even
    though it names the customer and quotes no wrong percentage.
    """
    violations = (shield or default_shield()).check(text, facts.name, facts.offer_pct)
    return not any(v.rule in FACT_RULES for v in violations)


def distinct_n(texts: Sequence[str], n: int) -> float:
    grams, total = set(), 0
    for t in texts:
        tokens = normalise(t).split()
        seq = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        grams.update(seq)
        total += len(seq)
    return len(grams) / total if total else 0.0


@dataclass
class MessageReport:
    metrics: dict[str, float]
    samples: pd.DataFrame


def evaluate_messages(generate: Generate, cases: Sequence[MessageFacts], shield: Shield | None = None,
                      label: str = "model") -> MessageReport:
    """Run ``generate`` on ``cases`` and score the raw generations (see module docstring)."""
    from scipy.stats import binomtest

    shield = shield or default_shield()
    texts = [t or "" for t in generate(cases)]  # "" (nothing usable written) fails the shield as empty
    rows = []
    for f, text in zip(cases, texts, strict=True):
        violations = shield.check(text, f.name, f.offer_pct)
        rows.append({"model": label, "name": f.name, "offer_pct": f.offer_pct, "tenure": f.tenure_months,
                     "plan": f.plan, "message": text, "length": len(text), "shield_passed": not violations,
                     "violations": "; ".join(sorted({v.rule for v in violations})),
                     "factual": not any(v.rule in FACT_RULES for v in violations)})
    samples = pd.DataFrame(rows)
    lengths = samples["length"].to_numpy()
    metrics = {
        "shield_pass_rate": float(samples["shield_passed"].mean()),
        # Clopper-Pearson: with 400 prompts, 99 % passing has a lower bound near 97.5 %
        "shield_pass_rate_low": float(binomtest(int(samples["shield_passed"].sum()), len(samples))
                                      .proportion_ci(0.95, "exact").low),
        "factual_accuracy": float(samples["factual"].mean()),
        "length_mean": float(lengths.mean()),
        "length_p10": float(np.percentile(lengths, 10)),
        "length_p50": float(np.percentile(lengths, 50)),
        "length_p90": float(np.percentile(lengths, 90)),
        "length_in_range": float(((lengths >= 50) & (lengths <= 200)).mean()),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        # what the model wrote: the message before its approved copy (the copy repeats by design)
        "personal_distinct_2": distinct_n([shield.split_copy(t, f.offer_pct)[0] for f, t in zip(cases, texts,
                                                                                                 strict=True)], 2),
        "n": float(len(samples)),
    }
    return MessageReport(metrics, samples)

"""Evaluation harness for message generators (base, SFT, and later PPO or a win-rate judge).

:func:`evaluate_messages` takes any ``generate(facts_list) -> texts`` function and held-out cases,
then reports:

* **shield pass rate before fallback**: share of raw generations that pass every shield rule;
* **factual accuracy**: share that address the customer by the right name (when one is known)
  and state exactly the decision's offer, and no other percentage;
* **length distribution**: mean, p10/p50/p90, share within 50–200 characters;
* **distinct-1/2**: unique uni-/bi-grams over all generations (diversity);

plus a samples table. Generation itself (:func:`generate_batch`) is greedy and batched, and stops at
the chat template's end-of-turn token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from retention.messaging.prompts import MessageFacts, render_prompt
from retention.messaging.shield import Shield, default_shield, normalise

Generate = Callable[[Sequence[MessageFacts]], list[str]]


def generate_batch(model, tokenizer, facts: Sequence[MessageFacts], max_new_tokens: int, batch_size: int,
                   progress: bool = False) -> list[str]:
    """Greedy generation for each case, batched, left-padded."""
    from tqdm.auto import tqdm

    tokenizer.padding_side = "left"
    eos = [t for t in {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")} if t is not None]
    out: list[str] = []
    model.eval()
    for lo in tqdm(range(0, len(facts), batch_size), desc="generate", disable=not progress):
        prompts = [render_prompt(tokenizer, f) for f in facts[lo:lo + batch_size]]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                 pad_token_id=tokenizer.pad_token_id)
        for row in ids[:, enc["input_ids"].shape[1]:]:
            out.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return out


def factual(text: str, facts: MessageFacts) -> bool:
    """Right name (if known) and exactly the decision's offer, and no other percentage."""
    norm = normalise(text)
    if facts.name and normalise(facts.name) not in norm:
        return False
    found = {float(p) for p in re.findall(r"(\d+(?:\.\d+)?)\s*(?:%|percent\b)", norm)}
    return found == ({float(facts.offer_pct)} if facts.offer_pct > 0 else set())


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
    shield = shield or default_shield()
    texts = generate(cases)
    rows = []
    for f, text in zip(cases, texts, strict=True):
        violations = shield.check(text, f.name, f.offer_pct)
        rows.append({"model": label, "name": f.name, "offer_pct": f.offer_pct, "tenure": f.tenure_months,
                     "plan": f.plan, "message": text, "length": len(text), "shield_passed": not violations,
                     "violations": "; ".join(sorted({v.rule for v in violations})), "factual": factual(text, f)})
    samples = pd.DataFrame(rows)
    lengths = samples["length"].to_numpy()
    metrics = {
        "shield_pass_rate": float(samples["shield_passed"].mean()),
        "factual_accuracy": float(samples["factual"].mean()),
        "length_mean": float(lengths.mean()),
        "length_p10": float(np.percentile(lengths, 10)),
        "length_p50": float(np.percentile(lengths, 50)),
        "length_p90": float(np.percentile(lengths, 90)),
        "length_in_range": float(((lengths >= 50) & (lengths <= 200)).mean()),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "n": float(len(samples)),
    }
    return MessageReport(metrics, samples)

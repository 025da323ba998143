"""Win rates of one generator over another, judged by what the policy never optimised.

For each held-out decision, generator A's message is compared with generator B's by two judges:

* the **gold** reward model: trained on pairs the proxy reward model (the one PPO-text optimised)
  never saw, from a generator of its own (:mod:`retention.messaging.gold_pairs`: another phrase
  bank, name list and set of failure families, on other customers), the other half of the HH-RLHF
  and OpenAssistant pairs, and half of any human labels (Gao, Schulman & Hilton 2022; independence is
  checked by :func:`retention.messaging.preferences.check_independent` before training). It shares
  the proxy's base model, so it can share that model's biases; human labels from the blind review are
  the fully independent judge;
* a deterministic **rubric** (:func:`rubric`): factual (the shield's fact rules, 2 points),
  personal (the name, 1; a mention of the plan, 1), no promise (1), length within 50–200 characters (1).

**The shield is part of every judgement**: a message it blocks never wins. If only one of the two is
blocked, the other wins; if both are, it is a tie. Otherwise the higher score wins, and equal scores
tie. Ties count one half. The 95 % interval is a percentile bootstrap over the paired outcomes
(:func:`win_rate`, ``scipy.stats.bootstrap``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from retention.messaging.evaluate import factual
from retention.messaging.prompts import MessageFacts
from retention.messaging.shield import Shield, default_shield, normalise

Scorer = Callable[[Sequence[MessageFacts], Sequence[str]], Sequence[float]]

PROMISES = re.compile(r"\b(?:promis\w*|guarant\w*|forever|for life|lifetime|always|never|take care of|no matter what|"
                      r"for years|best deal|lowest price|risk[- ]free)\b")
"""Words of a vague or unconditional promise (the rubric's "no promise" point)."""
PLAN_WORDS = ("fiber", "fibre", "dsl", "phone", "internet", "month-to-month", "monthly plan", "one year", "two year",
              "contract")


def outcomes(score_a: Sequence[float], score_b: Sequence[float], blocked_a: Sequence[bool],
             blocked_b: Sequence[bool], tie_tolerance: float = 1e-6) -> np.ndarray:
    """Per pair: 1 if A wins, 0.5 for a tie, 0 if B wins (see the module docstring for the shield rule)."""
    a, b = np.asarray(score_a, dtype=float), np.asarray(score_b, dtype=float)
    ba, bb = np.asarray(blocked_a, dtype=bool), np.asarray(blocked_b, dtype=bool)
    diff = a - b
    out = np.where(diff > tie_tolerance, 1.0, np.where(diff < -tie_tolerance, 0.0, 0.5))
    out = np.where(ba & ~bb, 0.0, out)
    out = np.where(~ba & bb, 1.0, out)
    return np.where(ba & bb, 0.5, out)


@dataclass(frozen=True)
class WinRate:
    """A win rate with its 95 % interval and the counts behind it."""

    rate: float
    low: float
    high: float
    n: int
    wins: int
    ties: int
    losses: int

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}{'_' + k if k != 'rate' else ''}": float(v) for k, v in asdict(self).items()}


def win_rate(results: Sequence[float], confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> WinRate:
    """Mean of paired outcomes (1 / 0.5 / 0) with a percentile-bootstrap interval.

    With no pairs the rate is NaN; when every outcome is the same the interval is that value.
    """
    from scipy.stats import bootstrap

    x = np.asarray(results, dtype=float)
    wins, ties, losses = int((x == 1).sum()), int((x == 0.5).sum()), int((x == 0).sum())
    if x.size == 0:
        return WinRate(float("nan"), float("nan"), float("nan"), 0, 0, 0, 0)
    rate = float(x.mean())
    if np.all(x == x[0]) or x.size < 2:
        return WinRate(rate, rate, rate, int(x.size), wins, ties, losses)
    ci = bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                   random_state=np.random.default_rng(seed)).confidence_interval
    return WinRate(rate, float(ci.low), float(ci.high), int(x.size), wins, ties, losses)


def mentions_plan(text: str, facts: MessageFacts) -> bool:
    """Whether the message mentions the customer's plan (internet type, phone, contract)."""
    norm, plan = normalise(text), normalise(facts.plan)
    return any(w in norm and w in plan for w in PLAN_WORDS) or bool(plan and plan.split(",")[0] in norm)


def rubric(text: str, facts: MessageFacts, shield: Shield | None = None) -> dict[str, float]:
    """Rubric points of one message; ``total`` is their sum (0–6), ``blocked`` whether the shield blocks it."""
    shield = shield or default_shield()
    blocked = bool(shield.check(text, facts.name, facts.offer_pct))
    norm = normalise(text)
    points = {
        "factual": 2.0 * factual(text, facts, shield),
        "name": float(bool(facts.name) and facts.name.lower() in norm),
        "plan": float(mentions_plan(text, facts)),
        "no_promise": float(PROMISES.search(norm) is None),
        "length": float(50 <= len(text.strip()) <= 200),
    }
    return {**points, "total": sum(points.values()), "blocked": float(blocked)}


@dataclass
class Judgement:
    """Per-pair judgements and the win rates of A over B."""

    pairs: pd.DataFrame
    gold: WinRate | None
    rubric: WinRate

    def metrics(self, prefix: str = "") -> dict[str, float]:
        out = self.rubric.as_dict(f"{prefix}rubric_win_rate")
        if self.gold is not None:
            out.update(self.gold.as_dict(f"{prefix}gold_win_rate"))
        return out


def judge(facts: Sequence[MessageFacts], texts_a: Sequence[str], texts_b: Sequence[str], gold: Scorer | None = None,
          shield: Shield | None = None, n_resamples: int = 2000, seed: int = 0) -> Judgement:
    """Compare A's and B's messages for the same decisions with the gold reward model and the rubric."""
    shield = shield or default_shield()
    ra = [rubric(t, f, shield) for f, t in zip(facts, texts_a, strict=True)]
    rb = [rubric(t, f, shield) for f, t in zip(facts, texts_b, strict=True)]
    blocked_a, blocked_b = [r["blocked"] > 0 for r in ra], [r["blocked"] > 0 for r in rb]
    rows = pd.DataFrame({
        "name": [f.name for f in facts], "tenure_months": [f.tenure_months for f in facts],
        "plan": [f.plan for f in facts], "monthly_charges": [f.monthly_charges for f in facts],
        "offer_pct": [f.offer_pct for f in facts], "message_a": list(texts_a), "message_b": list(texts_b),
        "blocked_a": blocked_a, "blocked_b": blocked_b,
        "rubric_a": [r["total"] for r in ra], "rubric_b": [r["total"] for r in rb],
    })
    rows["rubric_outcome"] = outcomes(rows["rubric_a"], rows["rubric_b"], blocked_a, blocked_b)
    gold_rate = None
    if gold is not None:
        rows["gold_a"] = np.asarray(gold(facts, texts_a), dtype=float)
        rows["gold_b"] = np.asarray(gold(facts, texts_b), dtype=float)
        rows["gold_outcome"] = outcomes(rows["gold_a"], rows["gold_b"], blocked_a, blocked_b)
        gold_rate = win_rate(rows["gold_outcome"], n_resamples=n_resamples, seed=seed)
    return Judgement(rows, gold_rate, win_rate(rows["rubric_outcome"], n_resamples=n_resamples, seed=seed))

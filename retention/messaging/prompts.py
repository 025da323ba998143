"""Prompt builder: customer facts + decision -> chat messages -> the model's chat template.

Input fields are untrusted. The name goes through :func:`retention.messaging.shield.usable_name`,
numeric fields are parsed (the prompt states tenure in words, never a number), and categorical
fields are reduced to short plain words, so no request field can carry instructions into the prompt.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

from retention.messaging.shield import usable_name

SYSTEM_PROMPT = (
    "Telecom SMS opening: a greeting and one or two warm sentences. No offer, number or link."
)
"""The generator writes only the personal part; the offer and the opt-out are approved copy
(:mod:`retention.messaging.compose`). So the prompt carries no number the message must not contain."""


@dataclass(frozen=True)
class MessageFacts:
    """What the generator may know about one customer and decision."""

    name: str
    tenure_months: int
    plan: str
    monthly_charges: float
    offer_pct: int


def _plain(value: Any, fallback: str) -> str:
    text = re.sub(r"[^A-Za-z \-]", "", str(value or ""))[:30].strip()
    return text or fallback


def describe_plan(record: dict[str, Any]) -> str:
    """A short plan description from Telco fields, e.g. 'Fiber optic internet, month-to-month'."""
    internet = _plain(record.get("InternetService"), "No")
    contract = _plain(record.get("Contract"), "Month-to-month").lower()
    base = "phone only" if internet == "No" else f"{internet} internet"
    return f"{base}, {contract}"


def facts_from_record(record: dict[str, Any], offer_pct: int) -> MessageFacts:
    """Facts from a Telco-style record (``name``, ``tenure``, ``MonthlyCharges``, plan fields)."""
    try:
        tenure = int(float(record.get("tenure", 0) or 0))
    except (TypeError, ValueError):
        tenure = 0
    try:
        charges = float(record.get("MonthlyCharges", 0.0) or 0.0)
    except (TypeError, ValueError):
        charges = 0.0
    if not math.isfinite(charges):
        charges = 0.0
    return MessageFacts(
        name=usable_name(record.get("name")),
        tenure_months=max(0, min(tenure, 1200)),
        plan=describe_plan(record),
        monthly_charges=round(max(0.0, min(charges, 100_000.0)), 2),
        offer_pct=int(offer_pct),
    )


def tenure_band(tenure_months: int) -> str:
    """Tenure in words (the personal part never states a number): ``new``, ``mid`` or ``long``."""
    return "long" if tenure_months >= 24 else "mid" if tenure_months >= 6 else "new"


TENURE_WORDS = {"new": "recently joined", "mid": "a customer for a while", "long": "a customer for years"}


FOCUSES = {"loyalty": "thanks for loyalty", "plan": "their plan", "help": "help"}


def focus_of(facts: MessageFacts) -> str:
    """What the personal part is about, a key of :data:`FOCUSES`: a stable hash of the customer's facts.

    The focus varies the prompt across customers, so messages vary too, and the same customer always
    gets the same focus (serving and gates agree).
    """
    key = f"{facts.name}|{facts.tenure_months}|{facts.plan}|{facts.monthly_charges:.2f}"
    return tuple(FOCUSES)[int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % len(FOCUSES)]


def build_messages(facts: MessageFacts) -> list[dict[str, str]]:
    """The generator's chat prompt: name, tenure in words, plan and focus; no number (54-64 tokens with
    SmolLM2's tokenizer on Telco's values; a long name or plan field adds to it)."""
    user = (f"Name: {facts.name or '(none)'}. "
            f"{TENURE_WORDS[tenure_band(facts.tenure_months)].capitalize()}. "
            f"Plan: {facts.plan.replace('Fiber optic', 'fiber')}. "
            f"About: {FOCUSES[focus_of(facts)]}.")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def render_prompt(tokenizer, facts: MessageFacts) -> str:
    """The prompt string for generation, via the tokenizer's chat template."""
    return tokenizer.apply_chat_template(build_messages(facts), tokenize=False, add_generation_prompt=True)

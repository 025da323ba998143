"""Prompt builder: customer facts + decision -> chat messages -> the model's chat template.

Input fields are untrusted. The name goes through :func:`retention.messaging.shield.usable_name`,
numbers are formatted from parsed values, and categorical fields are reduced to short plain
words, so no request field can carry instructions into the prompt.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from retention.messaging.shield import usable_name

SYSTEM_PROMPT = (
    "Write one SMS (50-200 characters) from a telecom company to the customer. Use their first name, state "
    "the exact offer and no other number or price, and end with 'Reply STOP to opt out.'"
)


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


def build_messages(facts: MessageFacts) -> list[dict[str, str]]:
    offer = f"{facts.offer_pct}% off the monthly bill for 3 months" if facts.offer_pct > 0 else \
        "no discount; a friendly check-in"
    user = (
        f"Customer first name: {facts.name or '(unknown: greet without a name)'}\n"
        f"Tenure: {facts.tenure_months} months\nPlan: {facts.plan}\n"
        f"Monthly charges: {facts.monthly_charges:.2f}\nOffer: {offer}\nWrite the SMS."
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def render_prompt(tokenizer, facts: MessageFacts) -> str:
    """The prompt string for generation, via the tokenizer's chat template."""
    return tokenizer.apply_chat_template(build_messages(facts), tokenize=False, add_generation_prompt=True)

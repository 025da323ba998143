"""SFT data: a retention-SMS corpus from real Telco customers × offers, plus OpenAssistant replies.

Reference messages come from a documented, seeded generator. Each one combines an opening, an
optional appreciation line that depends on tenure (in words only), an offer line (or a check-in line for 0 %), an
optional call to action and an opt-out. Several phrasings are drawn for each part, so openings,
tones and lengths vary. Every reference must have 50–200 characters, address the customer by name,
state exactly the decision's offer, and **pass the safety shield**; candidates that do not are redrawn.

Telco has no names. Each customer gets a first name from :data:`FIRST_NAMES`, chosen by a stable
hash of ``customerID``. At serving time the request carries the real name.
"""

from __future__ import annotations

import hashlib
import json
import random

import pandas as pd

from retention.data.preferences import ASSISTANT_TAG, HUMAN_TAG
from retention.messaging.prompts import build_messages, facts_from_record
from retention.messaging.shield import Shield, default_shield
from retention.offers import OFFER_PERCENT

FIRST_NAMES = (
    "Maria", "James", "Aisha", "Chen", "Olivia", "Mateo", "Priya", "Noah", "Fatima", "Liam", "Sofia", "Kwame",
    "Emma", "Hiroshi", "Zoe", "Ahmed", "Isabella", "Lucas", "Amara", "Ethan", "Mia", "Diego", "Leila", "Oscar",
    "Nadia", "Samuel", "Yuki", "Grace", "Omar", "Elena", "Daniel", "Ines", "Tariq", "Chloe", "Rafael", "Anya",
    "Jonas", "Lucia", "Kofi", "Hannah", "Ravi", "Clara", "Mohammed", "Julia", "Andre", "Sara", "Tomas", "Leah",
)

OPENINGS = ("Hi {name},", "Hello {name}!", "Hey {name},", "Dear {name},", "{name}, good news!",
            "Thanks for being with us, {name}!", "Hi {name}!")
APPRECIATION = {  # no numbers: the shield allows no quantity but the offer (tenure is said in words)
    "long": ("After all this time together, we want to say thank you.", "You've been with us for years,"
             " and we're grateful.", "Thank you for your long loyalty."),
    "mid": ("Thanks for your loyalty.", "We appreciate you being with us.", "It's great to have you with us."),
    "new": ("We're glad you chose us.", "Welcome aboard, and thanks for joining us.", "We're happy to have you."),
}
OFFER_LINES = ("Enjoy {pct}% off your {plan} plan for the next 3 months.", "Here's {pct}% off your bill for 3 months.",
               "We'd like to give you {pct}% off for the next 3 months.", "Get {pct}% off your monthly plan for 3 "
               "months.", "As a thank-you, take {pct}% off your next 3 bills.")
CHECK_IN_LINES = ("If anything about your plan could work better, just reply and we'll help.",
                  "We're here if you need help with your {plan} plan.",
                  "Is your plan still right for you? Reply and we'll take a look.",
                  "Just checking in: let us know if we can make your service better.")
CTAS = ("Reply YES to accept.", "Reply YES to claim it.", "Just reply YES.", "")
OPT_OUTS = ("Reply STOP to opt out.", "Text STOP to opt out.", "Reply STOP to unsubscribe.")


def name_for(customer_id: str) -> str:
    digest = hashlib.sha256(str(customer_id).encode()).digest()
    return FIRST_NAMES[int.from_bytes(digest[:4], "big") % len(FIRST_NAMES)]


def reference_message(name: str, tenure: int, plan: str, pct: int, rng: random.Random,
                      shield: Shield | None = None, tries: int = 50) -> str:
    """One varied reference SMS that passes the shield (see module docstring)."""
    shield = shield or default_shield()
    band = "long" if tenure >= 24 else "mid" if tenure >= 6 else "new"
    short_plan = plan.split(",")[0]
    for _ in range(tries):
        parts = [rng.choice(OPENINGS)]
        if rng.random() < 0.6:
            parts.append(rng.choice(APPRECIATION[band]))
        if pct > 0:
            parts.append(rng.choice(OFFER_LINES))
            cta = rng.choice(CTAS)
            if cta:
                parts.append(cta)
        else:
            parts.append(rng.choice(CHECK_IN_LINES))
        parts.append(rng.choice(OPT_OUTS))
        text = " ".join(parts).format(name=name, pct=pct, plan=short_plan)
        if not shield.check(text, name, pct):
            return text
    return shield.template(name, pct)


def retention_examples(customers: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` prompt/completion examples from Telco customers × random offers."""
    rng = random.Random(seed)
    rows = customers.sample(n=n, replace=n > len(customers), random_state=seed).to_dict("records")
    out = []
    for rec in rows:
        pct = rng.choice(OFFER_PERCENT)
        record = {**rec, "name": name_for(rec["customerID"])}
        facts = facts_from_record(record, pct)
        text = reference_message(facts.name, facts.tenure_months, facts.plan, pct, rng)
        out.append({"source": "retention", "customerID": rec["customerID"], "name": facts.name, "offer_pct": pct,
                    "prompt": build_messages(facts), "completion": [{"role": "assistant", "content": text}]})
    return pd.DataFrame(out)


def _hh_to_messages(prompt: str) -> list[dict[str, str]]:
    messages = []
    for chunk in prompt.split(HUMAN_TAG)[1:]:
        human, _, assistant = chunk.partition(ASSISTANT_TAG)
        messages.append({"role": "user", "content": human.strip()})
        if assistant.strip():
            messages.append({"role": "assistant", "content": assistant.strip()})
    return messages


def oasst_examples(sft_pairs: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` OpenAssistant best-ranked replies as prompt/completion examples."""
    if n <= 0 or sft_pairs.empty:
        return pd.DataFrame(columns=["source", "prompt", "completion"])
    rows = sft_pairs.sample(n=min(n, len(sft_pairs)), random_state=seed)
    return pd.DataFrame([{"source": "oasst1", "prompt": _hh_to_messages(r.prompt),
                          "completion": [{"role": "assistant", "content": r.response}]} for r in rows.itertuples()])


def sft_dataset(customers: pd.DataFrame, oasst: pd.DataFrame, n: int, oasst_fraction: float, seed: int):
    """A shuffled ``datasets.Dataset`` of prompt/completion conversations (retention + OASST)."""
    from datasets import Dataset

    ret = retention_examples(customers, n, seed)
    extra = oasst_examples(oasst, int(round(n * oasst_fraction)), seed)
    frame = pd.concat([ret[["source", "prompt", "completion"]], extra], ignore_index=True)
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return Dataset.from_list(frame.to_dict("records")), ret


def preview(frame: pd.DataFrame, k: int = 5) -> str:
    return json.dumps([r["completion"][0]["content"] for r in frame.head(k).to_dict("records")], indent=1)

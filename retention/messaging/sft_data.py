"""SFT data: personal parts for real Telco customers × offers, plus (optionally) OpenAssistant replies.

The generator writes only the **personal part** of a message: a greeting and one or two sentences;
the offer and the opt-out are approved copy (:mod:`retention.messaging.compose`). Its references
come from a documented, seeded phrase bank (:func:`personal_reference`): a greeting (named, or
nameless when the customer has no usable name), then one or two sentences drawn from appreciation
fitted to the tenure band, lines about the customer's plan (fiber, DSL, phone only; a flexible or
a contract plan) and offers of help. Each reference is what :func:`~retention.
messaging.compose.personal_part` would keep of itself, and the composed message passes the shield;
candidates that do not are redrawn.

:func:`reference_message` (a whole SMS with the offer written out) is the chosen message of the
reward models' domain pairs (:mod:`retention.messaging.preferences`).

Telco has no names. Each customer gets a first name from :data:`FIRST_NAMES`, chosen by a stable
hash of ``customerID``. At serving time the request carries the real name.
"""

from __future__ import annotations

import hashlib
import json
import random
import re

import pandas as pd

from retention.data.preferences import ASSISTANT_TAG, HUMAN_TAG
from retention.messaging.compose import approved_copy, personal_part
from retention.messaging.prompts import build_messages, facts_from_record, focus_of, tenure_band
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


GREETINGS = ("Hi {name},", "Hello {name}!", "Hey {name},", "Dear {name},", "Hi {name}!", "Good day, {name}!",
             "Hello {name},", "{name}, hello!")
NAMELESS_GREETINGS = ("Hi there!", "Hello!", "Hi there,", "Hello there!", "Good day!")
APPRECIATION_BAND = {
    "long": ("Thank you for staying with us all this time.", "You've been with us a long time, and we're grateful.",
             "We really value your loyalty.", "It means a lot that you've stuck with us.",
             "Thanks for being one of our longest-standing customers.", "We appreciate every day you've been with us.",
             "Your loyalty hasn't gone unnoticed.", "Thank you for trusting us for so long.",
             "Customers like you are the reason we love what we do.", "We've loved having you with us all along."),
    "mid": ("Thanks for being with us.", "We're glad you're part of the family.", "It's great to have you on board.",
            "We appreciate you choosing us.", "Thanks for sticking with us.", "We hope you're enjoying your service.",
            "It's been good having you with us.", "We value having you as a customer.",
            "Thanks for being such a valued part of our community.", "We're grateful you keep choosing us."),
    "new": ("Welcome aboard, and thanks for joining us.", "We're so glad you chose us.", "Thanks for choosing us.",
            "We hope you're settling in well.", "Welcome to the family!", "It's lovely to have you with us.",
            "We're happy you joined us.", "Thanks for giving us a try.",
            "We hope your first days with us have gone smoothly.", "Great to have you with us from the start."),
}
PLAN_LINES = {
    "fiber": ("We hope your fiber connection keeps you moving fast.",
              "We hope your fiber internet is serving you well.",
              "Your fiber connection matters to us.", "We want your fiber service to feel effortless."),
    "dsl": ("We hope your DSL line is treating you well.", "We want your DSL connection to be reliable for you.",
            "Your DSL service matters to us.", "We hope your home internet runs smoothly."),
    "phone": ("We hope your phone service keeps you connected.", "Staying in touch with the people you love matters.",
              "Your phone line matters to us.", "We want every call you make to be clear."),
    "flexible": ("We like that your flexible plan fits your life.", "We hope your flexible plan suits you."),
    "contract": ("Thanks for your commitment to us.", "We're glad your plan gives you peace of mind."),
}
HELP_LINES = ("We're here whenever you need us.", "If anything feels off, we're happy to help.",
              "Our team is always glad to hear from you.", "We want your service to work perfectly for you.",
              "Your feedback always helps us do better.", "We'd love to hear how things are going.",
              "Let us know if we can make anything easier.", "We're always working to serve you better.",
              "Just a quick hello from all of us.", "We hope everything is going well on your end.",
              "We're thinking of you and wanted to say hello.", "Wishing you a wonderful day.")


def split_greeting(text: str) -> tuple[str, str]:
    """``(greeting, rest)`` of a personal part that opens with one of the bank's greetings (any name)."""
    forms = sorted(GREETINGS + NAMELESS_GREETINGS, key=len, reverse=True)
    for form in forms:
        pattern = "^" + re.escape(form).replace(re.escape("{name}"), r"[^\s,!]+(?: [^\s,!]+)?") + r"\s+"
        m = re.match(pattern, text)
        if m:
            return text[:m.end()].strip(), text[m.end():]
    return "", text


def plan_keys(plan: str) -> tuple[str, str]:
    """(connection, contract) keys of :data:`PLAN_LINES` for a :func:`describe_plan` string."""
    low = plan.lower()
    connection = "fiber" if "fiber" in low else "dsl" if "dsl" in low else "phone"
    return connection, "flexible" if "month" in low else "contract"


def personal_reference(name: str, tenure: int, plan: str, pct: int, rng: random.Random,
                       shield: Shield | None = None, tries: int = 50, focus: str = "loyalty") -> str:
    """One varied personal part that :func:`personal_part` keeps whole and the shield passes composed.

    Its first sentence is about ``focus`` (a key of :data:`retention.messaging.prompts.FOCUSES`);
    a second sentence, drawn from another pool, follows 60 % of the time."""
    shield = shield or default_shield()
    connection, contract = plan_keys(plan)
    pools = {"loyalty": APPRECIATION_BAND[tenure_band(tenure)], "plan": PLAN_LINES[connection] + PLAN_LINES[contract],
             "help": HELP_LINES}
    for _ in range(tries):
        greeting = rng.choice(GREETINGS if name else NAMELESS_GREETINGS).format(name=name)
        first, second = focus, rng.choice([k for k in pools if k != focus])
        sentences = [rng.choice(pools[first])] + ([rng.choice(pools[second])] if rng.random() < 0.6 else [])
        if greeting.endswith(",") and not sentences[0].startswith(("I ", "I'", "DSL")):
            sentences[0] = sentences[0][0].lower() + sentences[0][1:]  # "Hi Maria, thanks for ..."
        text = " ".join([greeting, *sentences])
        if personal_part(text, name, pct, shield) == text and not shield.check(
                f"{text} {approved_copy(pct, shield)}", name, pct):
            return text
    return rng.choice(GREETINGS if name else NAMELESS_GREETINGS).format(name=name).rstrip(",!") + "!"


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
    """``n`` prompt/completion examples (personal parts) from Telco customers × random offers.

    One customer in ten is nameless, so the model also learns the nameless greeting."""
    rng = random.Random(seed)
    rows = customers.sample(n=n, replace=n > len(customers), random_state=seed).to_dict("records")
    out = []
    for rec in rows:
        pct = rng.choice(OFFER_PERCENT)
        record = {**rec, "name": "" if rng.random() < 0.1 else name_for(rec["customerID"])}
        facts = facts_from_record(record, pct)
        text = personal_reference(facts.name, facts.tenure_months, facts.plan, pct, rng, focus=focus_of(facts))
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

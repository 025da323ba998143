"""The gold judge's own preference data: a second phrase bank and its own failure families.

The gold reward model judges PPO-text against SFT. If it learned from the proxy's data generator
(:mod:`retention.messaging.preferences`, built on :mod:`retention.messaging.sft_data`'s phrase bank),
it would share the proxy's blind spots and reward the same shortcuts, and a win rate by it would
measure agreement with the proxy rather than quality (Gao, Schulman & Hilton 2022). So this module
shares **no data generator, phrase, name list or corruption function** with the proxy's pairs: it
imports neither ``sft_data`` nor ``preferences`` (a test checks the imports and that no sentence of
one bank appears in the other). What it shares is the product: the approved copy
(:func:`~retention.messaging.compose.compose`), the facts (:class:`MessageFacts`) and the shield
that checks the chosen message.

Chosen messages
---------------
A greeting, then a sentence of thanks fitted to how long the customer has stayed (the product's
tenure bands, :func:`~retention.messaging.prompts.tenure_band`: the generator's prompt states them, so
they are the specification, not the proxy's data), then, most of the time, a sentence
about the customer's connection or contract, or an offer of help. All of it in another voice than
the generator's corpus, with names from :data:`GOLD_NAMES` (accents, apostrophes and hyphens
included). Every chosen message passes the shield.

Failure families
----------------
Each says what a demanding reviewer would mark down in the *personal* part, which the shield mostly
does not decide (the approved copy is the same on both sides):

``form_letter``
    the whole personal part replaced by an impersonal notice ("Hello Zoë, this note concerns your
    account.");
``mismatch``
    the thanks or the plan sentence describes another customer: a veteran thanked for joining, a
    DSL customer asked about fiber;
``manipulative``
    guilt, pressure or over-familiarity in place of one sentence ("Don't make us beg, Zoë.");
``assurance``
    a promise in words that nobody can keep ("From now on, your connection simply cannot fail.");
``echo``
    the thanks said again in other words, padding instead of content;
``cut_off``
    a sentence cut off mid-phrase and run into the start of another, as a generator that lost its
    thread writes;
``scrambled``
    a sentence with its words out of order.

Lengths: replacements are drawn closest in length to what they replace, on a random side, so the
rejected message is the longer one in roughly half of the pairs (a test pins 30-70 %).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from retention.messaging.compose import compose
from retention.messaging.prompts import MessageFacts, tenure_band
from retention.messaging.shield import Shield, default_shield

GOLD_NAMES = ("Zoë", "José", "Siobhán", "Björn", "Anaïs", "Chiara", "Dmitri", "Efua", "Farah", "Gustavo", "Hana",
              "Ibrahim", "Jiho", "Kalani", "Lorenzo", "Malak", "Nnamdi", "Orla", "Pilar", "Quentin", "Rania",
              "Søren", "Tamsin", "Uriel", "Valentina", "Wen", "Ximena", "Yusuf", "Zara", "Anne-Marie", "D'Arcy",
              "Mei-Ling", "Renée", "Thiago", "Agnieszka", "Bongani", "Catalina", "Dev", "Esmé", "Freya")

GREET = ("Hi {name},", "Hello {name},", "Hi {name}!", "Hello {name}!", "Good morning {name},", "Hey {name}!")
THANKS = {
    "fresh": ("We're delighted you picked us, and we hope the start has been easy.",
              "It's a pleasure to count you among our newest customers.",
              "Thank you for giving us your trust so recently.",
              "Our wish is that your first weeks with us felt easy."),
    "settled": ("We're grateful you've kept choosing us season after season.",
                "It's been a real pleasure looking after you.",
                "We're thankful you've made us part of your routine.",
                "Your custom genuinely matters to our team."),
    "veteran": ("You've stood by us for a long stretch, and we don't take that lightly.",
                "Few customers have been with us as long as you have, and we're thankful.",
                "Your long loyalty is something our whole team appreciates.",
                "You've been part of our story for ages, thank you."),
}
CONNECTION = {
    "fiber": ("May your fiber line be quick whenever you need it.",
              "Fast, steady fiber is what we want you to have at home."),
    "dsl": ("May your DSL line stay steady for everything you do online.",
            "A dependable DSL connection every day is our aim for you."),
    "phone": ("We hope your calls come through loud and clear.",
              "Clear calls to family and friends are what we want for you."),
}
CONTRACT = {
    "flexible": ("We know you like the freedom of a flexible plan.",),
    "committed": ("Thank you for the trust your longer plan shows.",),
}
SUPPORT = ("If something isn't working, our support team would love to sort it out.",
           "Should you ever have a question, we're only a message away.",
           "Tell us anytime how we could serve you better.")

NOTICES = ("This note concerns your account.", "This is a routine account notification.",
           "Please see the account information that follows.", "Our records show an update for your line.",
           "This message is sent to all customers on your plan type.",
           "Information regarding your service is provided below for your reference.",
           "This automated notice is issued to account holders in line with our standard customer procedures.",
           "Please note that this communication relates to the service registered under your account with us.")
MANIPULATIVE = ("Don't make us beg.", "Honestly, leaving would break our hearts.",
                "You owe us a little loyalty after everything, surely.", "Sweetheart, you know you'd regret going.",
                "Think hard about how it would feel to walk away from us.", "We'd take it very personally if you left.",
                "After all the years we've put into you, walking away now would feel like a betrayal.",
                "You're practically family, darling, so don't you dare think about leaving us behind.")
ASSURANCES = ("From now on, your connection simply cannot fail.", "Every problem you've had is gone for good.",
              "You will never wait on hold again.", "We promise nothing will ever bother you again.",
              "Your service is flawless from today.", "Consider every issue permanently solved.",
              "We guarantee in writing that your line stays up forever, whatever happens.",
              "Rest assured, you will never face a single problem with your service from here on.")
ECHOES = ("And once more, thank you, thank you, thank you.", "We said it already, but truly, thanks again.",
          "Thanks, thanks and thanks again.", "Really, we just want to thank you, thank you so much again.")


@dataclass(frozen=True)
class GoldExample:
    """One gold preference: the facts, the chosen and the rejected SMS (served form), the family."""

    facts: MessageFacts
    chosen: str
    rejected: str
    family: str


def gold_name(customer_id: str) -> str:
    """A stable first name from :data:`GOLD_NAMES` for a customer (another list than the generator's)."""
    digest = hashlib.blake2b(f"gold-name:{customer_id}".encode(), digest_size=4).digest()
    return GOLD_NAMES[int.from_bytes(digest, "big") % len(GOLD_NAMES)]


def stay_band(tenure_months: int) -> str:
    """``fresh``, ``settled`` or ``veteran``: the product's tenure bands (new, mid, long)."""
    return {"new": "fresh", "mid": "settled", "long": "veteran"}[tenure_band(tenure_months)]


def connection_of(plan: str) -> str:
    low = plan.lower()
    return "fiber" if "fiber" in low else "dsl" if "dsl" in low else "phone"


def _sentences(facts: MessageFacts, rng: random.Random) -> list[str]:
    """The chosen personal part's sentences after the greeting: thanks, then usually one more."""
    out = [rng.choice(THANKS[stay_band(facts.tenure_months)])]
    roll = rng.random()
    if roll < 0.45:
        out.append(rng.choice(CONNECTION[connection_of(facts.plan)]))
    elif roll < 0.6:
        out.append(rng.choice(CONTRACT["flexible" if "month" in facts.plan.lower() else "committed"]))
    elif roll < 0.85:
        out.append(rng.choice(SUPPORT))
    return out


def _join(greeting: str, sentences: Sequence[str], facts: MessageFacts) -> str:
    body = list(sentences)
    if body and greeting.endswith(","):
        first = body[0].split()[0]
        body[0] = body[0] if first.isupper() else body[0][:1].lower() + body[0][1:]
    return compose(" ".join([greeting, *body]), facts)


def _nearest(options: Sequence[str], length: int, rng: random.Random) -> str:
    """An option near ``length`` characters: the nearest among the longer or the shorter ones (at random)."""
    longer = [o for o in options if len(o) > length]
    shorter = [o for o in options if len(o) <= length]
    side = (longer if rng.random() < 0.5 else shorter) or list(options)
    return min(side, key=lambda o: (abs(len(o) - length), rng.random()))


# ----------------------------------------------------------------------------- failure families
def form_letter(greeting: str, sentences: list[str], facts: MessageFacts, rng: random.Random) -> list[str]:
    """Every sentence replaced by an impersonal notice of about its length (as many sentences)."""
    out: list[str] = []
    for sentence in sentences:
        out.append(_nearest([n for n in NOTICES if n not in out], len(sentence), rng))
    return out


def mismatch(greeting: str, sentences: list[str], facts: MessageFacts, rng: random.Random) -> list[str]:
    """The thanks of another tenure band, or a line about another connection."""
    band, connection = stay_band(facts.tenure_months), connection_of(facts.plan)
    out = list(sentences)
    if len(out) > 1 and out[1] in CONNECTION[connection] and rng.random() < 0.5:
        others = [s for key, group in CONNECTION.items() if key != connection for s in group]
        out[1] = _nearest(others, len(out[1]), rng)
        return out
    opposite = {"fresh": "veteran", "veteran": "fresh", "settled": rng.choice(("fresh", "veteran"))}[band]
    out[0] = _nearest(THANKS[opposite], len(out[0]), rng)
    return out


def _replace_one(pool: Sequence[str]) -> Callable[[str, list[str], MessageFacts, random.Random], list[str]]:
    def transform(greeting: str, sentences: list[str], facts: MessageFacts, rng: random.Random) -> list[str]:
        out = list(sentences)
        i = rng.randrange(len(out))
        out[i] = _nearest(pool, len(out[i]), rng)
        return out
    return transform


def echo(greeting: str, sentences: list[str], facts: MessageFacts, rng: random.Random) -> list[str]:
    """The thanks said again: the last sentence becomes a repeat of the thanks in other words."""
    out = list(sentences)
    if len(out) == 1:
        return [out[0], _nearest(ECHOES, len(out[0]) // 2, rng)] if rng.random() < 0.5 else \
            [_nearest(ECHOES, len(out[0]), rng)]
    out[-1] = _nearest(ECHOES, len(out[-1]), rng)
    return out


def cut_off(greeting: str, sentences: list[str], facts: MessageFacts, rng: random.Random) -> list[str]:
    """One sentence cut mid-phrase and run into the start of another, of about the length it had."""
    out = list(sentences)
    i = rng.randrange(len(out))
    words = out[i].rstrip(".!?").split()
    keep = rng.randint(2, max(2, len(words) - 2))
    tail = rng.choice([s for s in SUPPORT + tuple(CONNECTION[connection_of(facts.plan)]) if s != out[i]]).split()
    room = max(1, len(words) - keep + rng.choice((-2, -1, 0, 1, 2)))
    out[i] = " ".join(words[:keep] + [tail[0].lower()] + tail[1:room]).rstrip(",") + "."
    return out


def scrambled(greeting: str, sentences: list[str], facts: MessageFacts, rng: random.Random) -> list[str]:
    """One sentence with its words out of order (the same length)."""
    out = list(sentences)
    i = max(range(len(out)), key=lambda j: len(out[j]))
    words = out[i].rstrip(".!?").split()
    shuffled = words[:]
    while shuffled == words and len(words) > 2:
        rng.shuffle(shuffled)
    out[i] = " ".join(shuffled) + "."
    return out


GOLD_FAMILIES: dict[str, Callable[[str, list[str], MessageFacts, random.Random], list[str]]] = {
    "form_letter": form_letter,
    "mismatch": mismatch,
    "manipulative": _replace_one(MANIPULATIVE),
    "assurance": _replace_one(ASSURANCES),
    "echo": echo,
    "cut_off": cut_off,
    "scrambled": scrambled,
}


CANDIDATES = 8  # failures drawn per chosen message; the one nearest in length on a random side is kept


def gold_example(facts: MessageFacts, family: str, rng: random.Random, shield: Shield | None = None,
                 tries: int = 40) -> GoldExample:
    """A chosen message that passes the shield and its ``family`` failure (differing in the personal part).

    Of :data:`CANDIDATES` failures drawn, the kept one is the nearest in length to the chosen message
    among the longer ones or among the others (the side at random): length is no shortcut.
    """
    shield = shield or default_shield()
    for _ in range(tries):
        greeting = rng.choice(GREET).format(name=facts.name) if facts.name else rng.choice(("Hello,", "Hi!"))
        sentences = _sentences(facts, rng)
        chosen = _join(greeting, sentences, facts)
        if shield.check(chosen, facts.name, facts.offer_pct):
            continue
        drawn = {_join(greeting, GOLD_FAMILIES[family](greeting, sentences, facts, rng), facts)
                 for _ in range(CANDIDATES)} - {chosen}
        if drawn:
            want_longer = rng.random() < 0.5
            side = [r for r in drawn if (len(r) > len(chosen)) == want_longer] or sorted(drawn)
            rejected = min(sorted(side), key=lambda r: (abs(len(r) - len(chosen)), rng.random()))
            return GoldExample(facts, chosen, rejected, family)
    raise ValueError(f"no gold example for {facts} in {tries} tries (family {family}): the bank and the shield "
                     "disagree")


def gold_examples(facts: Sequence[MessageFacts], seed: int, families: Sequence[str] | None = None) -> list[GoldExample]:
    """One example per facts, families taken in turn."""
    names = list(families or GOLD_FAMILIES)
    rng = random.Random(seed)
    shield = default_shield()
    return [gold_example(f, names[i % len(names)], rng, shield) for i, f in enumerate(facts)]


def bank_sentences() -> set[str]:
    """Every sentence of this bank (for the test that the proxy's bank shares none)."""
    groups = [*THANKS.values(), *CONNECTION.values(), *CONTRACT.values(), SUPPORT, NOTICES, MANIPULATIVE, ASSURANCES,
              ECHOES]
    return {re.sub(r"\s+", " ", s.strip().lower()) for g in groups for s in g}

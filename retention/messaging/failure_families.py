"""The proxy reward model's failure families: how a good retention SMS goes wrong, one function each.

Whole-message families
----------------------
Built from Telco *train* customers × offers. For each pair, *chosen* is a good message
(:func:`retention.messaging.sft_data.reference_message`: it passes the shield, states the right
facts, uses the name, is warm and applies no pressure). *Rejected* is a realistic failure from one
named family. Half the time the failure is made from the chosen message itself (a minimal pair), half
the time from another good message for the same customer, so the reward model learns the failure
and not the wording. One function per family; examples for Maria, 34 months on DSL, offer 10 %:

``wrong_offer`` (wrong or extra offer)
    "Hi Maria! Enjoy **15%** off your DSL plan for the next 3 months. Reply STOP to opt out." or
    the right offer "... **plus 5% off your phone line**." A 0 % check-in gets a discount it may not give.
``wrong_name`` (missing or wrong name)
    "Hi **Omar**, thanks for your loyalty. ..." or "Hi **there**, ...".
``false_promise`` (a vague or false promise, often with no number)
    "... **We'll take care of your internet for years to come.** ..." / "... **free for life** ...".
``pressure`` (guilt or pressure)
    "... **Please don't leave us, Maria.** ..." / "... **Decide today or it's gone.** ...".
``rambling`` (past the 200-character limit)
    the good message with chatty filler until it is longer than 200 characters.
``generic`` (nothing about the customer)
    "Dear customer, we have great offers for you this season. Reply STOP to opt out."
``contact_channel`` (an unapproved link or phone number)
    "... **Claim it at www.telco-offers.net** ..." / "... **Call 0800 555 0199** ...".
``leaked_price`` (a price or bill amount)
    "... **Your bill of $89.10 drops to $80.19.** ..."
``off_topic`` (about something else)
    "Hi Maria, **did you catch the game last night? The weather looks great this weekend.** Reply STOP to opt out."
``no_opt_out`` (the opt-out is missing)
    "Hi Maria! Enjoy 10% off your DSL plan for the next 3 months. Reply YES to accept."

Personal-part families
----------------------
``bland``, ``irrelevant``, ``guilt``, ``word_promise`` and ``repetitive`` judge what the shield mostly
does not decide. Their *chosen* message is in the served form (:func:`composed_reference`: a personal
reference and the approved copy), and the *rejected* one is always a minimal pair: the same greeting
and approved copy, one sentence of the personal part replaced by the family's sentence nearest in
length (longer or shorter at random), or said twice.

Each family is ``transform(text, facts, rng) -> rejected text``; :data:`FAMILIES` names them all and
:func:`parse_families` reads a comma-separated setting of them. The pairs are assembled in
:mod:`retention.messaging.preferences`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from retention.messaging.compose import compose
from retention.messaging.prompts import MessageFacts, focus_of
from retention.messaging.sft_data import FIRST_NAMES, OPT_OUTS, personal_reference, split_greeting
from retention.messaging.shield import default_shield


def _split_opt_out(text: str) -> tuple[str, str]:
    """``(body, opt-out sentence)`` of a reference message (its last sentence is one of ``OPT_OUTS``)."""
    for opt in OPT_OUTS:
        if text.endswith(opt):
            return text[: -len(opt)].rstrip(), opt
    return text, ""


def _insert(text: str, sentence: str) -> str:
    """``sentence`` placed before the opt-out."""
    body, opt = _split_opt_out(text)
    return f"{body} {sentence} {opt}".strip()


def wrong_offer(text: str, facts: MessageFacts, rng: random.Random) -> str:
    """A different percentage than decided, or a second offer on top (a discount on a check-in)."""
    pct = facts.offer_pct
    if pct > 0 and rng.random() < 0.6:
        other = rng.choice([p for p in (5, 10, 15, 20, 25, 30, 50) if p != pct])
        return re.sub(rf"(?<!\d){pct}%", f"{other}%", text, count=1)
    extra = rng.choice([p for p in (5, 10, 15, 20) if p != pct])
    line = rng.choice((f"Plus {extra}% off your phone line for 3 months.", f"And enjoy {extra}% off your next bill.",
                       f"We'll also add {extra}% off for new devices."))
    return _insert(text, line)


def wrong_name(text: str, facts: MessageFacts, rng: random.Random) -> str:
    """Another customer's name, or no name at all."""
    name = facts.name
    if not name or name not in text:
        return "Hi there! " + text
    if rng.random() < 0.6:
        return text.replace(name, rng.choice([n for n in FIRST_NAMES if n != name]))
    return (text.replace(f"Dear {name}", "Dear customer").replace(f"{name}, good news!", "Good news!")
            .replace(f", {name}!", "!").replace(name, "there"))


def false_promise(text: str, facts: MessageFacts, rng: random.Random) -> str:
    """A vague or false promise: "we'll take care of your internet for 5 years", "free for life"."""
    line = rng.choice((
        "We'll take care of your internet for years to come.", "We'll take care of your internet for 5 years.",
        "Your price is locked in for life.", "It's basically free for life.", "Your bill will never go up.",
        "We promise you'll never have a problem again.", "Guaranteed the best deal in town.",
        "You'll always get the fastest speeds, no matter what.",
    ))
    return _insert(text, line)


def pressure(text: str, facts: MessageFacts, rng: random.Random) -> str:
    """Guilt or pressure: "don't leave us", "decide today"."""
    name = f", {facts.name}" if facts.name else ""
    line = rng.choice((
        f"Please don't leave us{name}.", "We'd be heartbroken if you left.", "Decide today or it's gone.",
        "After everything we've done for you, please stay.", "Don't let us down.",
        "You'd be making a big mistake by leaving.", "Act now, before it's too late!",
    ))
    return _insert(text, line)


FILLER = ("We have been thinking a lot about all of our customers lately and how much each of them means to us.",
          "As you know, our network keeps growing every day and our team works around the clock on it.",
          "We also want to remind you that our stores are open every day and our staff are always happy to chat.",
          "There are so many exciting things happening here and we can't wait to share them all with you soon.")


def rambling(text: str, facts: MessageFacts, rng: random.Random) -> str:
    """Chatty filler until the message is past the 200-character limit."""
    out = text
    for line in rng.sample(FILLER, len(FILLER)):
        out = _insert(out, line)
        if len(out) > 210:
            break
    return out


def generic(text: str, facts: MessageFacts, rng: random.Random) -> str:
    """Nothing about the customer: no name, no offer, no plan."""
    return rng.choice((
        "Dear customer, we have great offers for you this season. Reply STOP to opt out.",
        "Hello! Check out our latest deals and plans in store today. Reply STOP to opt out.",
        "Valued customer, thank you for choosing our network. Great things are coming. Text STOP to opt out.",
        "Hi! We have something special for our customers. Stay tuned. Reply STOP to unsubscribe.",
    ))


def contact_channel(text: str, facts: MessageFacts, rng: random.Random) -> str:
    """An unapproved link, phone number or e-mail address."""
    line = rng.choice(("Claim it at www.telco-offers.net today.", "Call 0800 555 0199 to claim it.",
                       "Details at bit.ly/keep-deal.", "Questions? Email offers@telco-mail.com.",
                       "Visit https://my-telco.example/claim to accept."))
    return _insert(text, line)


def leaked_price(text: str, facts: MessageFacts, rng: random.Random) -> str:
    """A price or bill amount (the customer's own charges, or the discounted bill)."""
    charges = facts.monthly_charges or 50.0
    after = charges * (1 - facts.offer_pct / 100)
    line = rng.choice((f"Your bill of ${charges:.2f} drops to ${after:.2f}.", f"You pay ${charges:.2f} a month now.",
                       f"That's ${charges - after:.2f} back in your pocket each month.",
                       f"Your plan costs {charges:.2f} dollars today."))
    return _insert(text, line)


OFF_TOPIC = ("did you catch the game last night? The weather looks great this weekend.",
             "our new recipe blog is live, with a lovely soup for rainy days.",
             "traffic downtown will be heavy on Saturday because of the parade.",
             "we are hiring friendly people for our call centre, tell your friends.")


def off_topic(text: str, facts: MessageFacts, rng: random.Random) -> str:
    """About something other than the customer's service and offer (name and opt-out kept)."""
    _, opt = _split_opt_out(text)
    who = facts.name or "there"
    return f"Hi {who}, {rng.choice(OFF_TOPIC)} {opt or 'Reply STOP to opt out.'}"


def no_opt_out(text: str, facts: MessageFacts, rng: random.Random) -> str:
    """The opt-out sentence removed (a call to action kept when there is one)."""
    body, _ = _split_opt_out(text)
    return body if len(body) >= 20 else body + " Talk soon!"


# ----------------------------------------------------------------------------- personal-part families
# The message a customer receives is a personal part + approved copy (retention.messaging.compose). In
# these families the chosen and the rejected messages share the approved copy and differ only in the
# personal part, in ways the shield mostly does not decide; the rejected personal part is picked, among
# its family's candidates, closest in length to the chosen one, so length is no shortcut.
BLAND = ("This is a message from your provider.", "We are contacting you about your account.",
         "Please read the information below.", "This is an automated message.", "Here is an update for you.",
         "We have information for you.")
IRRELEVANT = ("Hope you enjoyed the sunshine at the weekend.", "Did you catch the match last night?",
              "Don't forget to water your plants!", "Traffic looks heavy downtown this morning.",
              "Have you tried the new café on the corner?", "Remember to stretch after a long day.")
GUILT = ("It would really hurt us to lose you.", "After all we've done for you, we hope you stay.",
         "You wouldn't want to let us down, would you?", "Miss you loads, babe!",
         "We'll be so sad if you go anywhere else.", "We know where to find you, so stay put.")
WORD_PROMISES = ("We'll look after you no matter what.", "Nothing will ever go wrong for you with us.",
                 "Your service will be perfect from now on.", "You'll never have a single problem again.",
                 "We'll fix everything for you, guaranteed.", "Your internet will never drop again.")


def _closest(options: Sequence[str], length: int, rng: random.Random) -> str:
    """The option closest to ``length`` characters, on a side (longer or not) chosen at random, so a
    rejected personal part is longer than the chosen one about half the time."""
    longer = rng.random() < 0.5
    side = [o for o in options if (len(o) > length) == longer] or list(options)
    return min(side, key=lambda o: (abs(len(o) - length), rng.random()))


def _greeting_and_sentences(personal: str) -> tuple[str, list[str]]:
    """``("Hi Maria,", ["thanks for ...", "We hope ..."])`` of a personal part."""
    greeting, rest = split_greeting(personal)
    return greeting, [x for x in re.split(r"(?<=[.!?])\s+", rest) if x]


def _personal_family(pool: Sequence[str]):
    """A family that replaces one sentence of the personal part with one from ``pool`` (closest in length)."""
    def transform(text: str, facts: MessageFacts, rng: random.Random) -> str:
        personal, copy = default_shield().split_copy(text, facts.offer_pct)
        greeting, sentences = _greeting_and_sentences(personal)
        if not sentences:
            sentences = [""]
        i = rng.randrange(len(sentences))
        sentences[i] = _closest(pool, len(sentences[i]), rng)
        if greeting.endswith(","):
            sentences[0] = sentences[0][:1].lower() + sentences[0][1:]
        elif sentences[0]:
            sentences[0] = sentences[0][:1].upper() + sentences[0][1:]
        return " ".join(x for x in (greeting, *sentences, copy) if x)
    return transform


def repetitive(text: str, facts: MessageFacts, rng: random.Random) -> str:
    """The personal part says the same thing twice ("thanks for being with us. Thanks for being with us.")."""
    personal, copy = default_shield().split_copy(text, facts.offer_pct)
    greeting, sentences = _greeting_and_sentences(personal)
    first = sentences[0] if sentences else "thanks for being with us."
    return " ".join(x for x in (greeting, first, first[:1].upper() + first[1:], copy) if x)


PERSONAL_FAMILIES: dict[str, Callable[[str, MessageFacts, random.Random], str]] = {
    "bland": _personal_family(BLAND),  # generic against warm and specific
    "irrelevant": _personal_family(IRRELEVANT),  # off-topic against about the customer's plan or tenure
    "guilt": _personal_family(GUILT),  # pressure, guilt and over-familiarity
    "word_promise": _personal_family(WORD_PROMISES),  # promises made in words, no number
    "repetitive": repetitive,
}

FAMILIES: dict[str, Callable[[str, MessageFacts, random.Random], str]] = {
    "wrong_offer": wrong_offer, "wrong_name": wrong_name, "false_promise": false_promise, "pressure": pressure,
    "rambling": rambling, "generic": generic, "contact_channel": contact_channel, "leaked_price": leaked_price,
    "off_topic": off_topic, "no_opt_out": no_opt_out, **PERSONAL_FAMILIES,
}


def composed_reference(facts: MessageFacts, rng: random.Random) -> str:
    """A served-form message: a personal reference (:func:`~retention.messaging.sft_data.personal_reference`)
    and the approved copy (:func:`~retention.messaging.compose.compose`)."""
    personal = personal_reference(facts.name, facts.tenure_months, facts.plan, facts.offer_pct, rng,
                                  focus=focus_of(facts))
    return compose(personal, facts)


def parse_families(value: str, setting: str = "reward.held_out_families") -> list[str]:
    """Family names from a comma-separated setting; an unknown name is an error naming the setting."""
    names = [v.strip() for v in str(value).split(",") if v.strip()]
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        from retention.errors import ConfigError

        raise ConfigError(f"{setting} has unknown failure families {unknown}; choose from {sorted(FAMILIES)}.")
    return names

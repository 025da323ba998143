"""Preference pairs for the reward models: a domain set for retention SMS, plus HH-RLHF and OpenAssistant.

The domain set
--------------
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

Splits
------
Customers are split by a stable hash of ``customerID`` into *proxy* (trains the reward model that
PPO-text optimises), *gold* (trains the judge) and *eval* (held-out pairs for pairwise accuracy). The
``held_out_families`` never reach the proxy's training. The gold model's domain pairs come from its
own generator (:mod:`retention.messaging.gold_pairs`: another phrase bank, name list and set of
failure families, source ``domain_gold``), so it shares no data generator, corruption function or
pair with the proxy. The evaluation holds both kinds, on customers neither model trained on: how the
proxy does on the gold kind, and the gold model on the proxy's kind, measure how far each one's
judgement carries beyond its own generator. HH-RLHF pairs are split between proxy and gold by a hash
of the prompt, OpenAssistant pairs by conversation tree. :func:`check_independent` verifies that no
pair, prompt or customer is shared between the proxy and gold training sets; the ``train_reward``
step calls it before training.

Human labels from the blind review (:mod:`retention.messaging.review`, ``--extra-preferences``) are
split by a stable hash of each pair's prompt (:func:`human_part`) between the proxy's and the gold model's
training sets, as source ``human``: a person's judgement moves both the reward PPO-text optimises and
the judge of its gate, and no labelled pair is in both.

The reward models read a compact prompt (:func:`reward_prompt`): the customer's facts, not the
generator's instructions. It costs about half the tokens of the generator's prompt.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from retention.messaging.compose import compose
from retention.messaging.gold_pairs import gold_examples, gold_name
from retention.messaging.prompts import MessageFacts, facts_from_record, focus_of
from retention.messaging.sft_data import (
    FIRST_NAMES,
    OPT_OUTS,
    _hh_to_messages,
    name_for,
    personal_reference,
    reference_message,
    split_greeting,
)
from retention.messaging.shield import default_shield
from retention.offers import OFFER_PERCENT

COLUMNS = ("pair_id", "source", "family", "customerID", "name", "offer_pct", "prompt", "chosen", "rejected")
DOMAIN = "domain"
GOLD_DOMAIN = "domain_gold"  # the gold judge's own generator (retention.messaging.gold_pairs)
HUMAN = "human"
HH = "hh_rlhf"
OASST = "oasst1"
PARTS = ("proxy", "gold", "eval")

RATER_SYSTEM = "You rate retention SMS messages a telecom company sends to its customers."


def reward_prompt(facts: MessageFacts) -> list[dict[str, str]]:
    """The reward models' prompt for one decision: the facts the message should carry."""
    offer = f"{facts.offer_pct}% off the monthly bill for 3 months" if facts.offer_pct > 0 else "none (a check-in)"
    user = (f"Customer: {facts.name or '(no usable name)'}. Tenure: {facts.tenure_months} months. "
            f"Plan: {facts.plan}. Monthly charges: {facts.monthly_charges:.2f}. Offer: {offer}.")
    return [{"role": "system", "content": RATER_SYSTEM}, {"role": "user", "content": user}]


def reply(text: str) -> list[dict[str, str]]:
    """A conversational completion (what TRL's ``RewardTrainer`` takes as ``chosen`` / ``rejected``)."""
    return [{"role": "assistant", "content": text}]


# ----------------------------------------------------------------------------- failure families
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


# ----------------------------------------------------------------------------- pairs
def pair_id(prompt: Sequence[dict], chosen: Sequence[dict], rejected: Sequence[dict]) -> str:
    """A stable id of a pair's content: the same texts give the same id wherever they come from."""
    text = "\x1e".join(m["content"] for m in (*prompt, *chosen, *rejected))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _unit(key: str) -> float:
    """A stable number in [0, 1) from ``key``."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def customer_part(customer_id: str, gold_frac: float, eval_frac: float) -> str:
    """``proxy``, ``gold`` or ``eval`` for a customer, from a stable hash of the id."""
    if not (0 <= gold_frac and 0 <= eval_frac and gold_frac + eval_frac < 1):
        from retention.errors import ConfigError

        raise ConfigError(f"reward.gold_customer_frac ({gold_frac}) and reward.eval_customer_frac ({eval_frac}) must "
                          "be >= 0 and leave a share for the proxy (their sum below 1).")
    u = _unit(f"customer:{customer_id}")
    return "eval" if u < eval_frac else "gold" if u < eval_frac + gold_frac else "proxy"


def facts_for(record: dict, offer_pct: int) -> MessageFacts:
    """Facts of a Telco record with its stable first name (:func:`~retention.messaging.sft_data.name_for`)."""
    return facts_from_record({**record, "name": name_for(record["customerID"])}, offer_pct)


def domain_pairs(customers: pd.DataFrame, n: int, families: Sequence[str], seed: int) -> pd.DataFrame:
    """``n`` domain pairs from ``customers`` × random offers, failure families taken in turn.

    Customers are drawn without replacement while there are enough of them. Every chosen message
    passes the shield; every rejected one differs from it.
    """
    if n <= 0 or customers.empty or not families:
        return pd.DataFrame(columns=list(COLUMNS))
    rng = random.Random(seed)
    rows = customers.sample(n=n, replace=n > len(customers), random_state=seed).to_dict("records")
    out = []
    for i, rec in enumerate(rows):
        family = families[i % len(families)]
        pct = rng.choice(OFFER_PERCENT)
        facts = facts_for(rec, pct)
        if family in PERSONAL_FAMILIES:  # the served form; the rejected one differs in the personal part only
            chosen = composed_reference(facts, rng)
            rejected = FAMILIES[family](chosen, facts, rng)
        else:
            chosen = reference_message(facts.name, facts.tenure_months, facts.plan, pct, rng)
            base = chosen if rng.random() < 0.5 else reference_message(facts.name, facts.tenure_months, facts.plan,
                                                                        pct, rng)
            rejected = FAMILIES[family](base, facts, rng)
        if rejected == chosen:  # a transform that found nothing to change: fall back to a sure failure
            rejected = rambling(chosen, facts, rng)
        prompt = reward_prompt(facts)
        out.append({"pair_id": pair_id(prompt, reply(chosen), reply(rejected)), "source": DOMAIN, "family": family,
                    "customerID": str(rec["customerID"]), "name": facts.name, "offer_pct": pct, "prompt": prompt,
                    "chosen": reply(chosen), "rejected": reply(rejected)})
    return pd.DataFrame(out, columns=list(COLUMNS))


def gold_domain_pairs(customers: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` pairs from the gold judge's own generator (:mod:`retention.messaging.gold_pairs`), with its
    own names, for ``customers`` × random offers."""
    if n <= 0 or customers.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    rng = random.Random(seed)
    rows = customers.sample(n=n, replace=n > len(customers), random_state=seed).to_dict("records")
    facts = [facts_from_record({**rec, "name": gold_name(rec["customerID"])}, rng.choice(OFFER_PERCENT))
             for rec in rows]
    out = []
    for rec, ex in zip(rows, gold_examples(facts, seed), strict=True):
        prompt = reward_prompt(ex.facts)
        out.append({"pair_id": pair_id(prompt, reply(ex.chosen), reply(ex.rejected)), "source": GOLD_DOMAIN,
                    "family": ex.family, "customerID": str(rec["customerID"]), "name": ex.facts.name,
                    "offer_pct": ex.facts.offer_pct, "prompt": prompt, "chosen": reply(ex.chosen),
                    "rejected": reply(ex.rejected)})
    return pd.DataFrame(out, columns=list(COLUMNS))


def dialogue_pairs(frame: pd.DataFrame, n: int, source: str, seed: int) -> pd.DataFrame:
    """``n`` HH-RLHF or OpenAssistant pairs as conversations (family = the HH subset, or ``oasst1``)."""
    if n <= 0 or frame.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    rows = frame.sample(n=min(n, len(frame)), random_state=seed)
    out = []
    for r in rows.to_dict("records"):
        prompt, chosen, rejected = _hh_to_messages(r["prompt"]), reply(r["chosen"]), reply(r["rejected"])
        if not prompt or prompt[-1]["role"] != "user":
            continue
        family = str(r.get("source", source)).split("/")[-1] if source == HH else source
        out.append({"pair_id": pair_id(prompt, chosen, rejected), "source": source, "family": family,
                    "customerID": "", "name": "", "offer_pct": -1, "prompt": prompt, "chosen": chosen,
                    "rejected": rejected})
    return pd.DataFrame(out, columns=list(COLUMNS))


def human_part(prompt: Sequence[dict]) -> str:
    """``proxy`` or ``gold`` for a human-labelled pair, by a stable hash of its prompt (half each): every
    label about the same facts goes to the same side, so the two sets share no prompt."""
    return "proxy" if _unit(f"human:{_prompt_key(prompt)}") < 0.5 else "gold"


def dialogue_part(key: str) -> str:
    """``proxy`` or ``gold`` for an HH prompt or an OpenAssistant tree id (a stable hash, half each)."""
    return "proxy" if _unit(f"dialogue:{key}") < 0.5 else "gold"


@dataclass
class PreferenceSets:
    """The reward models' data: ``proxy`` and ``gold`` training sets, the held-out ``eval`` set."""

    proxy: pd.DataFrame
    gold: pd.DataFrame
    eval: pd.DataFrame

    def counts(self) -> dict[str, int]:
        """Pairs per set and source, e.g. ``{"proxy_domain": 240, "gold_hh_rlhf": 48, ...}``."""
        out = {}
        for part in PARTS:
            for source, n in getattr(self, part)["source"].value_counts().items():
                out[f"{part}_{source}"] = int(n)
        return out


def build_preference_sets(customers: pd.DataFrame, hh_train: pd.DataFrame, oasst_train: pd.DataFrame,
                          hh_test: pd.DataFrame, cfg, extra: pd.DataFrame | None = None) -> PreferenceSets:
    """The proxy, gold and eval sets (see module docstring) for a ``RewardModelConfig``.

    ``extra`` (human labels, :func:`retention.messaging.review.read_labels`) is split between the proxy
    and gold sets (:func:`human_part`).
    Raises ``ValueError`` if the proxy and gold sets share anything (:func:`check_independent`).
    """
    held_out = parse_families(cfg.held_out_families)
    trained = [f for f in FAMILIES if f not in held_out]
    if not trained:
        from retention.errors import ConfigError

        raise ConfigError("reward.held_out_families holds every family: the proxy would have no domain pairs; "
                          "hold out a few (e.g. pressure,leaked_price,off_topic).")
    part = customers["customerID"].map(lambda c: customer_part(c, cfg.gold_customer_frac, cfg.eval_customer_frac))
    n = cfg.domain_pairs
    n_gold, n_eval = round(n * cfg.gold_customer_frac), round(n * cfg.eval_customer_frac)
    domain = {
        "proxy": domain_pairs(customers[part == "proxy"], n - n_gold - n_eval, trained, cfg.seed),
        "gold": gold_domain_pairs(customers[part == "gold"], n_gold, cfg.seed + 1),
        "eval": _concat([domain_pairs(customers[part == "eval"], n_eval, list(FAMILIES), cfg.seed + 2),
                         gold_domain_pairs(customers[part == "eval"], n_eval, cfg.seed + 3)], cfg.seed),
    }
    hh_split = hh_train["prompt"].map(dialogue_part) if not hh_train.empty else pd.Series(dtype=str)
    tree_split = oasst_train["tree_id"].map(dialogue_part) if not oasst_train.empty else pd.Series(dtype=str)
    sets = {}
    for name in ("proxy", "gold"):
        frames = [domain[name],
                  dialogue_pairs(hh_train[hh_split == name] if len(hh_split) else hh_train, cfg.hh_pairs, HH,
                                 cfg.seed),
                  dialogue_pairs(oasst_train[tree_split == name] if len(tree_split) else oasst_train,
                                 cfg.oasst_pairs, OASST, cfg.seed)]
        if extra is not None and not extra.empty:
            frames.append(extra[extra["prompt"].map(human_part) == name][list(COLUMNS)])
        sets[name] = _concat(frames, cfg.seed)
    sets["eval"] = _concat([domain["eval"], dialogue_pairs(hh_test, cfg.eval_hh_pairs, HH, cfg.seed)], cfg.seed)
    check_independent(sets["proxy"], sets["gold"])
    return PreferenceSets(**sets)


def _concat(frames: list[pd.DataFrame], seed: int) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    out = pd.concat(frames, ignore_index=True).drop_duplicates("pair_id")
    return out.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _prompt_key(prompt: Sequence[dict]) -> str:
    return "\x1e".join(m["content"] for m in prompt)


def check_independent(proxy: pd.DataFrame, gold: pd.DataFrame) -> None:
    """Raise ``ValueError`` if the proxy and gold training sets share a pair, a prompt or a customer.

    The gold reward model judges the policy that optimised the proxy; it may only know what the proxy
    never saw (Gao, Schulman & Hilton 2022).
    """
    problems = []
    shared_pairs = set(proxy["pair_id"]) & set(gold["pair_id"])
    if shared_pairs:
        problems.append(f"{len(shared_pairs)} pair(s), e.g. {sorted(shared_pairs)[:3]}")
    shared_prompts = set(proxy["prompt"].map(_prompt_key)) & set(gold["prompt"].map(_prompt_key))
    if shared_prompts:
        problems.append(f"{len(shared_prompts)} prompt(s)")
    customers = (set(proxy["customerID"]) & set(gold["customerID"])) - {""}
    if customers:
        problems.append(f"{len(customers)} customer(s), e.g. {sorted(customers)[:3]}")
    if problems:
        raise ValueError("the proxy and gold reward models' training sets are not independent: they share "
                         + "; ".join(problems))


def pairs_dataset(frame: pd.DataFrame):
    """A ``datasets.Dataset`` of conversational ``prompt`` / ``chosen`` / ``rejected`` plus ``source``,
    ``family`` and ``pair_id``: what TRL's ``RewardTrainer`` takes (it ignores the extra columns)."""
    from datasets import Dataset

    cols = ["prompt", "chosen", "rejected", "source", "family", "pair_id"]
    return Dataset.from_list(frame[cols].to_dict("records"))


def flat_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Pairs as plain text columns (for MLflow dataset inputs and tables)."""
    def join(messages):
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)

    out = frame.drop(columns=["prompt", "chosen", "rejected"]).copy()
    out["prompt"] = frame["prompt"].map(join)
    out["chosen"] = frame["chosen"].map(lambda m: m[-1]["content"])
    out["rejected"] = frame["rejected"].map(lambda m: m[-1]["content"])
    return out

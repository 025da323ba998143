"""Messages that carry the facts by construction: the model writes the personal part, code the rest.

Regulated SMS is written this way in practice. The legally binding parts come from approved copy
chosen by the decision; the model personalises the rest:

* :func:`approved_copy`: the decided offer with its terms and the reply keywords, or the check-in
  for a 0 % decision, and the opt-out (``approved_copy`` in ``rules.yaml``);
* the **personal part**, written by the generator under a constraint (:func:`forbidden_tokens`): a
  token mask in the project's own decoder that cannot emit a digit, a currency, percent or
  ``@`` sign, a link or markup character, or a one-word entry of the shield's lexicons (benefits,
  urgency, promises, threats ...). :func:`personal_part` then keeps the greeting and at most two
  sentences before anything that reads like an offer or a call to action;
* :func:`compose`: the two together. The shield still checks the whole message and stays the one
  source of truth: a blocked message falls back to the template, and says why.

:func:`write_messages` is the one decoder: serving writes with it, and the generator gates judge
with it, so a gate measures what customers would receive.

Hand-written because the constraint must live inside the decoder that drops finished rows and
reuses the prompt cache (:func:`~retention.messaging.evaluate.greedy_decode`); outlines and
lm-format-enforcer would replace that decoder.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from retention.messaging.prompts import MessageFacts
from retention.messaging.sampling import GREEDY, Sampling
from retention.messaging.shield import Shield, default_shield

MAX_PERSONAL_CHARS = 100  # the approved copy takes up to 91 of the SMS's 200 characters (and a space)
MAX_PERSONAL_SENTENCES = 2
PERSONAL_MAX_TOKENS = 32  # a greeting and two short sentences; the decoder stops there
# characters a personal sentence never needs: numbers, money, percent, links, addresses, markup
FORBIDDEN_CHARS = set("%$€£¥@#/\\:<>{}[]|_=*~^`+&")
# a sentence with one of these is the model starting on the offer or a call to action: cut there
OFFER_CUE = re.compile(r"\b(?:off|discount\w*|offer\w*|reply|text|stop|yes|bill\w*|months?|save\w*|deal\w*|"
                       r"price\w*|free|claim|accept\w*|unsubscrib\w*|opt|years?|yearly|weeks?|weekly)\b",
                       re.IGNORECASE)
# a sentence opening like this is the model starting on the offer ("Here's 15% off ...", "Enjoy ...")
OFFER_START = re.compile(r"^\W*(?:here'?s|here is|enjoy|get|take|as a thank|we'?d like to give|we'?re giving|"
                         r"we have|we've got)\b", re.IGNORECASE)
SENTENCE = re.compile(r"[^.!?]+[.!?]")
GREETING = re.compile(r"^\s*((?:hi|hello|hey|dear|good (?:morning|afternoon|evening))\b[^,!.?\n]{0,32})[,!]",
                      re.IGNORECASE)
# whole words the decoder may not write either: the offer and its call to action are approved copy
CUE_WORDS = ("off", "discount", "discounts", "offer", "offers", "reply", "text", "stop", "yes", "bill", "bills",
             "month", "months", "save", "saving", "savings", "deal", "deals", "price", "prices", "free", "claim",
             "accept", "unsubscribe", "opt", "percent", "year", "years", "yearly", "week", "weeks", "weekly")


def approved_copy(offer_pct: int, shield: Shield | None = None) -> str:
    """The approved copy of a decision: the offer (or the check-in) and the opt-out."""
    return (shield or default_shield()).approved_copy(offer_pct)


def personal_part(text: str | None, name: str = "", offer_pct: int = 0, shield: Shield | None = None) -> str | None:
    """The greeting and personal sentences of a generated text, before any offer-like sentence.

    Keeps leading sentences (at most two, at most ``MAX_PERSONAL_CHARS``) while each contains no
    digit, no forbidden character, no offer or call-to-action cue and no offer-like opening, and
    **the shield passes the message composed so far** (:func:`compose` with the decision's
    ``offer_pct``): a sentence the shield would block (a quantity in words, a promise ...) ends the
    personal part instead of sending the whole message to the template. When the customer has a
    usable ``name`` and the kept sentences do not use it, the approved greeting ``Hi {name}!`` goes
    first (the shield requires the exact name). Returns None when nothing is left.
    """
    if not text:
        return None
    shield = shield or default_shield()
    copy = approved_copy(offer_pct, shield)
    clean = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()
    kept: list[str] = []
    for m in SENTENCE.finditer(clean):
        sentence = m.group(0).strip()
        if (any(_numeric(ch) or ch in FORBIDDEN_CHARS for ch in sentence) or OFFER_CUE.search(sentence)
                or OFFER_START.search(sentence) or len(" ".join([*kept, sentence])) > MAX_PERSONAL_CHARS):
            break
        if shield.check(f"{_with_name([*kept, sentence], name)} {copy}", name, offer_pct):
            break
        kept.append(sentence)
        if len(kept) == MAX_PERSONAL_SENTENCES:
            break
    if not kept and (greeting := GREETING.match(clean)):  # the greeting alone, when no sentence is usable
        kept = [greeting.group(1).strip() + "!"]
    while kept:
        personal = _with_name(kept, name)
        if len(personal) <= MAX_PERSONAL_CHARS and re.search(r"[^\W\d_]{2}", " ".join(kept)):
            return personal
        kept.pop()
    return None


def _numeric(ch: str) -> bool:
    """A digit, fraction, Roman numeral or other number character of any script (Unicode category N*)."""
    return unicodedata.category(ch).startswith("N")


def _with_name(sentences: Sequence[str], name: str) -> str:
    personal = " ".join(sentences)
    if name and not re.search(rf"(?<![\w'-]){re.escape(name)}(?![\w-])", personal):
        personal = f"Hi {name}! {personal}"
    return personal


def compose(personal: str, facts: MessageFacts, shield: Shield | None = None) -> str:
    """The SMS: the personal part, then the decision's approved copy (the offer once, and the opt-out)."""
    return f"{personal.strip()} {approved_copy(facts.offer_pct, shield)}"


def forbidden_tokens(tokenizer, shield: Shield | None = None):
    """A boolean mask over the vocabulary: True for tokens the personal part may not contain.

    A token is forbidden when its text holds a number character (any script: digits, ``½``, ``Ⅻ``), a character of
    ``FORBIDDEN_CHARS``, ``http`` or ``www``, or when its letters are a one-word entry of the
    shield's lexicons (``free``, ``guaranteed``, ``urgent`` ...) or of its number words (``five``,
    ``dozen`` ...), or one of ``CUE_WORDS`` (the offer's and call to action's words, and durations).
    Cached per tokenizer and shield.
    """
    shield = shield or default_shield()
    key = (id(tokenizer), id(shield))
    if key not in _MASKS:
        if len(_MASKS) >= 8:
            _MASKS.clear()
        _MASKS[key] = _mask(tokenizer, shield)
    return _MASKS[key]


_MASKS: dict[tuple[int, int], object] = {}


def _mask(tokenizer, shield: Shield):
    import torch

    groups = shield.rules["lexicons"].values()
    words = {w.rstrip("*").lower() for group in groups for w in group
             if isinstance(w, str) and " " not in w.strip() and len(w.rstrip("*")) >= 3}
    prefixes = tuple(w.rstrip("*").lower() for group in groups for w in group
                     if isinstance(w, str) and w.endswith("*") and " " not in w and len(w) >= 5)
    # quantities in words, as whole words only (a word-initial token: "ten", not the "ten" of "listen")
    numbers = {w.lower() for w in shield.rules["number_words"] if " " not in w.strip() and not w.endswith("*")}
    number_prefixes = tuple(w.rstrip("*").lower() for w in shield.rules["number_words"] if w.endswith("*"))
    size = len(tokenizer)
    mask = torch.zeros(size, dtype=torch.bool)
    for token_id in range(size):
        text = tokenizer.decode([token_id])
        low = text.strip().lower()
        letters = re.sub(r"[^a-z]", "", low)
        if (any(_numeric(ch) or ch in FORBIDDEN_CHARS or unicodedata.category(ch).startswith("S") for ch in text)
                or "http" in low or "www" in low
                or (letters and text[:1].isspace() and letters == low
                    and (letters in numbers or letters.startswith(number_prefixes)))
                or (letters and (letters in words or letters == low and letters in CUE_WORDS
                                 or (len(letters) >= 4 and letters.startswith(prefixes))))):
            mask[token_id] = True
    specials = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token_id in specials:  # end-of-turn must stay possible
        if token_id < size:
            mask[token_id] = False
    return mask


def compose_all(facts: Sequence[MessageFacts], texts: Sequence[str], shield: Shield | None = None) -> list[str | None]:
    """Each text's personal part with its decision's approved copy, or None where nothing usable is left."""
    shield = shield or default_shield()
    out: list[str | None] = []
    for f, text in zip(facts, texts, strict=True):
        personal = personal_part(text, f.name, f.offer_pct, shield)
        out.append(compose(personal, f, shield) if personal else None)
    return out


def write_messages(model, tokenizer, facts: Sequence[MessageFacts], max_new_tokens: int, batch_size: int,
                   progress: bool = False, shield: Shield | None = None,
                   sampling: Sampling = GREEDY) -> list[str | None]:
    """The serving decoder: constrained generation, the personal part kept, the approved copy added.

    ``sampling`` is the serving configuration's ``temperature`` and ``top_k``
    (:meth:`Sampling.of <retention.messaging.sampling.Sampling.of>`), seeded per prompt; greedy by
    default. At most ``min(max_new_tokens, PERSONAL_MAX_TOKENS)`` tokens are written. None where the
    model wrote nothing usable (the caller sends the template and says why).
    """
    from retention.messaging.evaluate import generate_batch

    shield = shield or default_shield()
    raw = generate_batch(model, tokenizer, facts, min(max_new_tokens, PERSONAL_MAX_TOKENS), batch_size, progress,
                         banned=forbidden_tokens(tokenizer, shield), sampling=sampling)
    return compose_all(facts, raw, shield)

"""The safety shield: every message is checked; any violation blocks it and an approved template is
sent instead, with the violations reported. It never just logs, and its fallback cannot fail.

The rules (``rules.yaml`` beside this file) say what a message **may** contain, not only what it
may not. A message for a decision (customer name, offer percentage) passes only if:

* it states the decision's offer **once**, in an approved form (``10%``, ``10 percent``), with
  its approved duration ("for the next 3 months") when the offer is above 0 %;
* it holds **no other quantity, duration, money amount or benefit**, in digits or in words:
  after the offer and any date or time of day are taken out, no digit, number word
  ("fifteen", "half", "a month"), currency sign or word, percentage, or benefit word ("free",
  "bonus", "on top") is left. A 0 % check-in may not speak of a saving at all;
* it holds **no contact channel** except the opt-out: no link (scheme, ``www.``, any host name,
  IP address, spelled-out dot), e-mail (``@``, "at ... dot"), phone number (digits are already
  quantities) or "call us"; the only link allowed is on the allowlist, exactly;
* it names the customer **exactly, as a whole word** (when a usable name is known);
* it has an opt-out ("Reply STOP", "STOP to opt out: just reply") that it does not deny, and
  asks for no reply keyword but YES or STOP;
* it has 50–200 visible characters, no hidden characters, and no word mixing scripts;
* it matches none of the lexicons (false promises, threats, profanity, insults, false urgency,
  prompt injection, credentials).

Checks run on a **normalised** copy: NFKC, every Unicode digit as ASCII, zero-width and bidi
characters removed (their presence is itself a violation, except inside an emoji sequence),
Cyrillic/Greek look-alikes folded to Latin, lower case. Lexicon entries match fuzzily: leetspeak
(``sh1t``), masking (``f*ck``) and letters split by spaces or dashes (``g-u-a-r-a-n-t-e-e-d``).

Names are untrusted input. :func:`safe_name` keeps a name only if it is a plausible personal
name: letters (with inner ``'`` or ``-``; typographic apostrophes and dashes count as those), at most
three parts, at most 30 characters, one script,
and no word the rules use. Otherwise prompts and templates greet without a name. The templates
are checked when the shield is built, named and nameless, for every offer, so :meth:`Shield.enforce`
always has a message that passes.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

RULES_PATH = Path(__file__).with_name("rules.yaml")
OFFER_PERCENTAGES = (0, 5, 10, 15)

# Zero-width, joiners, bidi controls, BOM, soft hyphen, variation selectors and similar invisible characters.
HIDDEN = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e"
                    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]")
# An emoji with its variation selector, skin tone and zero-width-joined parts: not hidden text.
_PICTO = "[\u2190-\u21ff\u2300-\u23ff\u2460-\u24ff\u25a0-\u27bf\u2900-\u297f\u2b00-\u2bff\U0001f000-\U0001faff]"
EMOJI = re.compile(f"{_PICTO}[\ufe0e\ufe0f\u20e3]?(?:\u200d{_PICTO}[\ufe0e\ufe0f]?)*")
CONFUSABLES = str.maketrans({
    # Cyrillic
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
    "ԁ": "d", "ɡ": "g", "һ": "h", "ӏ": "l", "ո": "n", "ԛ": "q", "ԝ": "w", "к": "k", "м": "m", "т": "t",
    "в": "b", "н": "h", "ь": "b", "г": "r", "п": "n", "л": "n", "з": "3", "ч": "4", "б": "6",
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p", "С": "c", "Т": "t",
    "Х": "x", "У": "y", "І": "i", "Ј": "j", "Ѕ": "s", "З": "3", "Ь": "b",
    # Greek
    "α": "a", "ο": "o", "ρ": "p", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "τ": "t", "υ": "u", "χ": "x",
    "β": "b", "γ": "y", "η": "n", "μ": "u", "ω": "w", "σ": "o", "ς": "c",
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o",
    "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
    # other look-alikes
    "ı": "i", "ℓ": "l", "٪": "%", "﹪": "%", "％": "%", "‐": "-", "‑": "-", "–": "-", "—": "-", "’": "'", "‘": "'",
})
# Leetspeak and masking: what each letter of a lexicon word may be written as.
LEET = {"a": "a@4*", "b": "b8*", "c": "c(*", "e": "e3*", "g": "g9*", "i": "i1!|l*", "l": "l1|i*", "o": "o0*",
        "s": "s5$z*", "t": "t7+*", "u": "uv*", "z": "z2*"}
SEP = r"[\s\-_.·•'*|/\\]?"  # one optional separator between the letters of a word
WORD_GAP = r"(?:\s|[-_*/])+"  # between the words of a phrase (sentence punctuation does not join words)
SCRIPTS = ("LATIN", "CYRILLIC", "GREEK")
MAX_NAME_CHARS = 30
MAX_NAME_PARTS = 3  # "Mary Ann Smith", "van der Berg"
NAME_PART = r"[^\W\d_]+(?:['\-][^\W\d_]+)*"
NAME_PUNCTUATION = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "‐": "-", "‑": "-", "–": "-", "—": "-"})


def _invisible(ch: str) -> bool:
    return ch != "\n" and (unicodedata.category(ch) in ("Cf", "Cc", "Co", "Cn", "Cs") or HIDDEN.match(ch) is not None)


def strip_invisible(text: str) -> str:
    return "".join(ch for ch in text if not _invisible(ch))


def _ascii_digits(text: str) -> str:
    return "".join(str(unicodedata.digit(ch)) if ch.isdigit() and not ch.isascii() else ch for ch in text)


def normalise(text: str) -> str:
    """The form every rule is checked on (see module docstring)."""
    text = _ascii_digits(unicodedata.normalize("NFKC", text))
    text = strip_invisible(text)
    text = text.translate(CONFUSABLES)
    # "İ" (Turkish dotted capital I) is the one letter whose lower case adds a combining mark ("i" + U+0307),
    # which no \w pattern matches: fold it to "i" so a name such as "İlkay" is found in its own greeting
    return re.sub(r"\s+", " ", text).strip().replace("\u0130", "I").lower()


def _scripts(word: str) -> set[str]:
    out = set()
    for ch in word:
        if ch.isalpha():
            script = unicodedata.name(ch, "").split(" ")[0]
            if script in SCRIPTS:
                out.add(script)
    return out


def foreign_letters(text: str) -> list[str]:
    """Letters outside the Latin script: in an English SMS they are look-alikes ("Guаranteed" with a
    Cyrillic a, "next З months" with a Cyrillic Ze for 3), whatever word they sit in."""
    out = []
    for ch in unicodedata.normalize("NFKC", text):
        if ch.isalpha() and not unicodedata.name(ch, "").startswith("LATIN"):
            out.append(ch)
    return out


def invisible_characters(text: str) -> list[str]:
    """Format, control, private-use and unassigned characters (zero-width, bidi, tag characters ...),
    except a line break and the joiners and selectors inside an emoji sequence."""
    return [ch for ch in EMOJI.sub("", text) if _invisible(ch)]


def fuzzy_pattern(phrase: str) -> str:
    """A regex for ``phrase`` that also matches leetspeak, masking and split letters (see module docstring)."""
    prefix = phrase.endswith("*")
    words = normalise(phrase.rstrip("*")).replace("-", " ").split()
    parts = []
    for word in words:
        letters = [f"[{re.escape(LEET[ch])}]" if ch in LEET else re.escape(ch) for ch in word]
        parts.append(SEP.join(letters))
    body = WORD_GAP.join(parts)
    return rf"(?<![a-z0-9]){body}{'[a-z]*' if prefix else ''}(?![a-z0-9])"


def _compile_any(phrases: list[str], fuzzy: bool = True) -> re.Pattern[str]:
    pats = [fuzzy_pattern(p) if fuzzy else re.escape(normalise(p)) for p in phrases]
    return re.compile("|".join(f"(?:{p})" for p in pats))


def _plausible_name_shape(text: str) -> bool:
    parts = text.split(" ")
    return (0 < len(text) <= MAX_NAME_CHARS and len(parts) <= MAX_NAME_PARTS
            and all(re.fullmatch(NAME_PART, p) for p in parts) and len(_scripts(text)) <= 1)


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "detail": self.detail}


@dataclass(frozen=True)
class ShieldResult:
    """What leaves the shield: the text to send, where it came from, and why."""

    text: str
    source: str  # "generator" | "template"
    passed: bool  # the candidate (generated) text passed every rule
    violations: list[Violation] = field(default_factory=list)
    send_at: datetime | None = None  # set when quiet hours delay the send

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "violations": [v.as_dict() for v in self.violations],
            "source": self.source,
            "send_at": self.send_at.isoformat() if self.send_at else None,
        }


# Rules about what the message states (used by the evaluation's factual accuracy).
FACT_RULES = frozenset({"missing_name", "missing_offer", "offer_repeated", "offer_qualified", "unapproved_quantity",
                        "unapproved_benefit", "offer_on_check_in", "money"})


@dataclass
class Shield:
    """Rules loaded from YAML, applied by :meth:`check` and enforced by :meth:`enforce`."""

    rules: dict[str, Any]

    def __post_init__(self) -> None:
        r = self.rules
        self._lexicons = {group: _compile_any(phrases) for group, phrases in r["lexicons"].items()}
        self._allowed_phrases = _compile_any(r["allowed_phrases"], fuzzy=False)
        self._number_words = _compile_any(r["number_words"])
        self._number_exceptions = re.compile("|".join(rf"(?<![a-z0-9]){p}(?![a-z0-9])" for p in r["number_exceptions"]))
        self._dates = [re.compile(p) for p in r["dates_and_times"]]
        self._duration = re.compile(r["offer"]["duration"])
        self._check_in = _compile_any(r["offer"]["check_in_forbidden"])
        self._urls = [re.compile(p) for p in r["urls"]["patterns"]]
        self._allow = [a.lower() for a in r["urls"]["allowlist"]]
        self._emails = [re.compile(p) for p in r["email_patterns"]]
        self._injection = [re.compile(p) for p in r["injection_patterns"]]
        self._opt_out = re.compile(r["opt_out"]["pattern"])
        self._reply_keywords = {k.upper() for k in r["reply_keywords"]}
        self._qualifier = re.compile(r["offer_qualifiers"])
        self._greeting = re.compile(rf"(?:^|[.!?]\s+)\W*{r['greeting']['words']}\b[ \t]+([^\W\d_][\w'-]*)"
                                    rf"(?:\s+(?:and|&)\s+([^\W\d_][\w'-]*))?")
        self._neutral = {w.lower() for w in r["greeting"]["neutral"]}
        self._not_names = {n.lower() for n in r["not_names"]}
        self._quiet = tuple(time.fromisoformat(r["quiet_hours"][k]) for k in ("start", "end"))
        self._usable_names: dict[str, str] = {}  # memo of usable_name
        for pct in OFFER_PERCENTAGES:  # the fallback can never fail: check it now, not at request time
            bad = self.check(self.template("", pct), "", pct)
            if bad:
                details = [v.detail for v in bad]
                raise ValueError(f"rules.yaml: the nameless {pct}% template fails the shield: {details}")

    @classmethod
    def from_yaml(cls, path: str | Path | None = None) -> Shield:
        return cls(yaml.safe_load(Path(path or RULES_PATH).read_text()))

    # ------------------------------------------------------------------ names
    def usable_name(self, name: Any) -> str:
        """``name`` if it is a plausible personal name the rules can greet with, else "".

        Answers are memoised per shield (names repeat: serving checks every request's name, and the
        check runs a dozen lexicon patterns); the memo is cleared when it reaches 100,000 names.
        """
        if not isinstance(name, str):
            return ""
        memo = self._usable_names
        found = memo.get(name)
        if found is None:
            if len(memo) >= 100_000:
                memo.clear()
            found = memo[name] = self._usable_name(name)
        return found

    def _usable_name(self, name: str) -> str:
        clean = safe_name(name)
        if not clean:
            return ""
        norm = normalise(clean)
        if any(part in self._not_names for part in re.split(r"[\s'\-]", norm)):
            return ""
        if any(p.search(norm) for p in self._lexicons.values()) or self._number_words.search(norm):
            return ""
        return clean

    # ------------------------------------------------------------------ rules
    def check(self, text: str, name: str, offer_pct: int) -> list[Violation]:
        """Every rule but quiet hours, on ``text`` for a decision (``name``, ``offer_pct``)."""
        if not isinstance(text, str) or not text.strip():
            return [Violation("empty", "no message text")]
        out: list[Violation] = []
        nfkc = unicodedata.normalize("NFKC", text)
        if invisible_characters(nfkc):
            out.append(Violation("hidden_characters", "zero-width, bidi-control or other invisible characters"))
        clean = self.usable_name(name)
        if foreign := foreign_letters(nfkc.replace(clean, " ") if clean else nfkc):
            out.append(Violation("lookalike", f"{len(foreign)} letter(s) outside the Latin script (look-alikes)"))
        visible = strip_invisible(EMOJI.sub("x", nfkc)).strip()
        lo, hi = self.rules["length"]["min"], self.rules["length"]["max"]
        if not lo <= len(visible) <= hi:
            out.append(Violation("length", f"{len(visible)} characters, allowed {lo}-{hi}"))
        norm = normalise(text)
        out += self._check_name(norm, name)
        out += self._check_greeting(norm, name)
        rest, offer_violations = self._take_offer(norm, offer_pct)
        out += offer_violations
        out += self._check_channels(rest)
        out += self._check_quantities(rest, offer_pct)
        out += self._check_lexicons(rest)
        if any(p.search(norm) for p in self._injection):
            out.append(Violation("banned_prompt_injection", "markup or a role label addressed to a machine"))
        out += self._check_opt_out(norm, nfkc)
        return out

    def _check_name(self, norm: str, name: str) -> list[Violation]:
        clean = self.usable_name(name)
        # a whole word: "Sam" is not in "Samantha", "Mei" not in "Mei-Ling"; "Sam's" still names Sam
        if clean and not re.search(rf"(?<![\w'-]){re.escape(normalise(clean))}(?!\w|-\w|'(?!s\b)\w)", norm):
            return [Violation("missing_name", f"does not address the customer by the exact name '{clean}'")]
        return []

    def _check_greeting(self, norm: str, name: str) -> list[Violation]:
        """A greeting addresses the customer, by the exact name or neutrally, and nobody else."""
        clean = normalise(self.usable_name(name))
        for m in self._greeting.finditer(norm):
            who, other = m.group(1), m.group(2)
            if other or (who != clean.split(" ")[0] and who not in self._neutral):
                return [Violation("missing_name", f"the greeting addresses '{m.group(0).strip()}', not the customer")]
        return []

    def _take_offer(self, norm: str, offer_pct: int) -> tuple[str, list[Violation]]:
        """Remove the approved offer (and its duration) from ``norm``; report a missing or repeated one."""
        out = []
        if offer_pct > 0:
            form = re.compile(self.rules["offer"]["form"].format(pct=int(offer_pct)))
            n = len(form.findall(norm))
            if any(self._qualifier.search(norm[:m.start()]) for m in form.finditer(norm)):
                out.append(Violation("offer_qualified", f"qualifies the {offer_pct}% offer ('up to', 'at least')"))
            if n == 0:
                out.append(Violation("missing_offer", f"does not state the {offer_pct}% offer"))
            elif n > 1:
                out.append(Violation("offer_repeated", f"states the offer {n} times; once is allowed"))
            norm = self._duration.sub(" ", form.sub(" ", norm))
        else:
            if m := self._check_in.search(norm):
                out.append(Violation("offer_on_check_in", f"a 0% check-in speaks of a saving ('{m.group(0)}')"))
        return norm, out

    def _check_channels(self, rest: str) -> list[Violation]:
        out = []
        rest = re.sub(r"\s*[\[\(\{<]\s*(?:\.|dot)\s*[\]\)\}>]\s*", ".", rest)  # defanged: evil[.]com
        for pattern in self._urls:
            for m in pattern.finditer(rest):
                url = m.group(0)
                bare = re.sub(r"^(?:(?:https?|ftp)://)?(?:www\.)?", "", url).rstrip(".,!?;:)")
                if not any(bare == a or bare.startswith(a + "/") or bare.startswith(a + "?") for a in self._allow):
                    out.append(Violation("contact_channel", f"a link: '{url}'"))
        if any(p.search(rest) for p in self._emails):
            out.append(Violation("contact_channel", "an e-mail address or handle"))
        return out

    def _without_dates(self, rest: str) -> str:
        for pattern in self._dates:
            rest = pattern.sub(" ", rest)
        return self._number_exceptions.sub(" ", rest)

    def _check_quantities(self, rest: str, offer_pct: int) -> list[Violation]:
        out = []
        plain = self._without_dates(rest)
        if m := re.search(r"[^\s]*\d[^\s]*", plain):
            out.append(Violation("unapproved_quantity", f"a number other than the offer: '{m.group(0)}'"))
        elif m := re.search(r"%|\bper\s*cent\b|\bpercent\w*|\bpct\b", plain):
            out.append(Violation("unapproved_quantity", "a percentage other than the offer"))
        if m := self._number_words.search(plain):
            out.append(Violation("unapproved_quantity", f"a quantity in words: '{m.group(0)}'"))
        if any(unicodedata.category(ch) == "Sc" for ch in plain) or re.search(
                r"(?<![a-z])(?:usd|eur|gbp|inr|dollars?|bucks?|euros?|pounds?|quid|cents?|pence|rupees?|yen|"
                r"grand|fivers?|tenners?|nickels?|dimes?|pennies|penny|sterling|currency)(?![a-z])", plain):
            out.append(Violation("money", "a money amount or currency"))
        return out

    def _check_lexicons(self, rest: str) -> list[Violation]:
        text = self._allowed_phrases.sub(" ", rest)
        out = []
        for group, pattern in self._lexicons.items():
            if m := pattern.search(text):
                rule = "unapproved_benefit" if group == "unapproved_benefits" else f"banned_{group}"
                out.append(Violation(rule, f"contains '{m.group(0)}'"))
        return out

    def _check_opt_out(self, norm: str, nfkc: str) -> list[Violation]:
        out = []
        if not self._opt_out.search(norm):
            out.append(Violation("missing_opt_out", "no opt-out (e.g. 'Reply STOP to opt out')"))
        folded = _ascii_digits(strip_invisible(nfkc)).translate(CONFUSABLES)
        for m in re.finditer(r"(?i:\b(?:reply|text|send|respond|type|enter|txt)\b)\s+(?:(?i:with)\s+)?[\"'“”‘’]?"
                             r"([A-Z0-9][A-Z0-9_-]*)\b", folded):
            if m.group(1).upper() not in self._reply_keywords and m.group(1).isupper():
                out.append(Violation("reply_keyword", f"asks for the reply keyword '{m.group(1)}'"))
        return out

    def send_time(self, when: datetime | None, timezone: str | None) -> datetime | None:
        """When quiet hours forbid sending at ``when`` (customer's local time), the next allowed time.

        Times at the very end of the calendar (where the next morning is not representable) are sent
        as they are, so no input can make this raise.
        """
        if when is None:
            return None
        try:
            tz = ZoneInfo(timezone) if timezone else None
        except (ZoneInfoNotFoundError, ValueError, OSError):
            tz = None
        try:
            local = when.astimezone(tz) if (tz and when.tzinfo) else (when.replace(tzinfo=tz) if tz else when)
            start, end = self._quiet
            t = local.time()
            quiet = (t >= start or t < end) if start > end else (start <= t < end)
            if not quiet:
                return None
            day = local.date() if t < end else local.date() + timedelta(days=1)
            return datetime.combine(day, end, tzinfo=local.tzinfo)
        except (OverflowError, ValueError):
            return None

    def approved_copy(self, offer_pct: int) -> str:
        """The approved copy of a decision (``approved_copy`` in the rules): the offer with its terms and
        the reply keywords, or the check-in for 0 %, and the opt-out."""
        rules = self.rules["approved_copy"]
        return rules["offer"].format(pct=int(offer_pct)) if offer_pct > 0 else rules["no_offer"]

    def split_copy(self, text: str, offer_pct: int) -> tuple[str, str]:
        """``(what comes before, approved copy)`` of a message that ends with its decision's approved
        copy; ``(text, "")`` when it does not."""
        copy = self.approved_copy(offer_pct)
        return (text[:-len(copy)].strip(), copy) if text.endswith(copy) else (text, "")

    def template(self, name: str, offer_pct: int) -> str:
        """The approved template for this decision: named when the name is usable and passes, else nameless."""
        key = "offer" if offer_pct > 0 else "no_offer"
        form = self.rules["templates"][key]
        nameless = form.format(name=self.rules["templates"]["nameless"], pct=offer_pct)
        clean = self.usable_name(name)
        if not clean:
            return nameless
        named = form.format(name=clean, pct=offer_pct)
        return named if not self.check(named, clean, offer_pct) else nameless

    def enforce(self, text: str | None, name: str, offer_pct: int, when: datetime | None = None,
                timezone: str | None = None, missing: str = "no generated text"
                ) -> ShieldResult:
        """Check ``text``; pass it through, or block it and return the approved template instead.

        ``missing`` is the ``no_candidate`` violation's detail when there is no text to check.
        """
        if offer_pct not in OFFER_PERCENTAGES:
            raise ValueError(f"offer_pct must be one of {OFFER_PERCENTAGES}, got {offer_pct!r}")
        send_at = self.send_time(when, timezone)
        violations = self.check(text, name, offer_pct) if text is not None else [Violation("no_candidate", missing)]
        if not violations:
            return ShieldResult(text=text, source="generator", passed=True, send_at=send_at)
        return ShieldResult(text=self.template(name, offer_pct), source="template", passed=False,
                            violations=violations, send_at=send_at)


def safe_name(name: Any) -> str:
    """The shape test of a usable name: letters (inner ``'``/``-``), at most 3 parts and 30 characters.

    Typographic apostrophes (``’ ‘ ʼ``) become ``'`` and dashes (``‐ ‑ – —``) become ``-`` first, so
    "O’Brien" and "Jean–Luc" keep their names (written with the plain characters).

    No digits, punctuation, hidden characters or mixed scripts; "" otherwise. The shield's
    :meth:`Shield.usable_name` also refuses words its rules use ("Winner", "Admin", "Stop").
    """
    if not isinstance(name, str):
        return ""
    text = unicodedata.normalize("NFKC", name)
    if any(_invisible(ch) for ch in text):
        return ""
    text = re.sub(r"\s+", " ", text.translate(NAME_PUNCTUATION)).strip()
    return text if _plausible_name_shape(text) else ""


@lru_cache(maxsize=1)
def default_shield() -> Shield:
    return Shield.from_yaml()


def usable_name(name: Any) -> str:
    """:meth:`Shield.usable_name` of the default rules (what prompts and templates greet with)."""
    return default_shield().usable_name(name)

"""Preference pairs for the reward models: a domain set for retention SMS, plus HH-RLHF and OpenAssistant.

The domain set
--------------
Built from Telco *train* customers × offers. For each pair, *chosen* is a good message and
*rejected* a realistic failure from one named family of :mod:`retention.messaging.failure_families`
(whole-message failures such as a wrong offer or a leaked price, and personal-part failures the
shield mostly does not decide, such as a bland or a guilt-tripping sentence).

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
split by a stable hash of each pair's customer facts (:func:`human_part`) between the proxy's and the
gold model's training sets, as source ``human``: a person's judgement moves both the reward PPO-text
optimises and the judge of its gate, and no labelled pair or customer is in both. Labels come from
the gate's own held-out customers, so the gold model stores the customers it has labels for and the
``ppo_text`` gate leaves them out.

The reward models read a compact prompt (:func:`reward_prompt`): the customer's facts, not the
generator's instructions. It costs about half the tokens of the generator's prompt.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from retention.messaging.failure_families import (
    FAMILIES,
    PERSONAL_FAMILIES,
    composed_reference,
    parse_families,
    rambling,
)
from retention.messaging.gold_pairs import gold_examples, gold_name
from retention.messaging.prompts import MessageFacts, facts_from_record
from retention.messaging.sft_data import _hh_to_messages, name_for, reference_message
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


def facts_key(prompt: Sequence[dict]) -> str:
    """A reward prompt's customer facts without the offer (:func:`reward_prompt`'s user turn up to
    ``Offer:``): the same key for one customer's four offers."""
    return prompt[-1]["content"].split(" Offer:")[0]


def human_part(prompt: Sequence[dict]) -> str:
    """``proxy`` or ``gold`` for a human-labelled pair, by a stable hash of its customer's facts
    (:func:`facts_key`, half each): every label about one customer, whatever the offer, goes to the
    same side, so the two sets share no prompt and no customer."""
    return "proxy" if _unit(f"human:{facts_key(prompt)}") < 0.5 else "gold"


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
    # a label about a customer one model already trains on goes to that model (else by hash, human_part)
    side = {facts_key(pr): name for name in ("proxy", "gold") for pr in domain[name]["prompt"]}
    sets = {}
    for name in ("proxy", "gold"):
        frames = [domain[name],
                  dialogue_pairs(hh_train[hh_split == name] if len(hh_split) else hh_train, cfg.hh_pairs, HH,
                                 cfg.seed),
                  dialogue_pairs(oasst_train[tree_split == name] if len(tree_split) else oasst_train,
                                 cfg.oasst_pairs, OASST, cfg.seed)]
        if extra is not None and not extra.empty:
            frames.append(extra[extra["prompt"].map(lambda pr: side.get(facts_key(pr)) or human_part(pr)) == name]
                          [list(COLUMNS)])
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

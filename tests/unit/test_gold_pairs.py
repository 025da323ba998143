"""The gold judge's own preference data: independent of the proxy's generator, and fair in length."""

from __future__ import annotations

import ast
import inspect
import random
import re

import numpy as np

from retention.messaging import failure_families, gold_pairs, sft_data
from retention.messaging.compose import approved_copy
from retention.messaging.gold_pairs import GOLD_FAMILIES, GOLD_NAMES, bank_sentences, gold_example, gold_examples
from retention.messaging.prompts import facts_from_record
from retention.messaging.shield import default_shield

PLANS = [{"InternetService": "Fiber optic", "Contract": "Month-to-month"},
         {"InternetService": "DSL", "Contract": "One year"}, {"InternetService": "No", "Contract": "Two year"}]


def _facts(n: int = 300) -> list:
    names = [*GOLD_NAMES, ""]
    return [facts_from_record({"name": names[i % len(names)], "tenure": (i * 7) % 73, "MonthlyCharges": 20 + i % 90,
                               **PLANS[i % 3]}, (0, 5, 10, 15)[i % 4]) for i in range(n)]


def test_the_gold_generator_imports_nothing_of_the_proxys_generator():
    tree = ast.parse(inspect.getsource(gold_pairs))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not imported & {"retention.messaging.sft_data", "retention.messaging.preferences",
                           "retention.messaging.failure_families"}, imported


def test_the_banks_share_no_sentence_and_no_name():
    def norm(s: str) -> str:
        return re.sub(r"\s+", " ", s.strip().lower())

    proxy_bank = {norm(s) for group in (*sft_data.APPRECIATION_BAND.values(), *sft_data.PLAN_LINES.values(),
                                         sft_data.HELP_LINES, *sft_data.APPRECIATION.values(), sft_data.CHECK_IN_LINES,
                                         failure_families.BLAND, failure_families.IRRELEVANT,
                                         failure_families.GUILT, failure_families.WORD_PROMISES,
                                         failure_families.FILLER, failure_families.OFF_TOPIC)
                  for s in group}
    assert proxy_bank and not bank_sentences() & proxy_bank

    def grams(text: str) -> set[tuple[str, ...]]:  # word 4-grams: no shared phrase either
        words = re.findall(r"[a-z']+", text)
        return {tuple(words[i:i + 4]) for i in range(len(words) - 3)}

    shared = set().union(*map(grams, bank_sentences())) & set().union(*map(grams, proxy_bank))
    assert not shared, shared
    assert not set(GOLD_NAMES) & set(sft_data.FIRST_NAMES)
    assert {"Zoë", "D'Arcy", "Anne-Marie", "Siobhán"} <= set(GOLD_NAMES)  # accents, apostrophes and hyphens


def test_every_chosen_message_passes_the_shield_and_the_failure_is_in_the_personal_part_only():
    shield = default_shield()
    examples = gold_examples(_facts(), seed=0)
    assert {e.family for e in examples} == set(GOLD_FAMILIES)
    passed = []
    for e in examples:
        f = e.facts
        assert not shield.check(e.chosen, f.name, f.offer_pct), e.chosen
        copy = approved_copy(f.offer_pct)
        assert e.chosen.endswith(copy) and e.rejected.endswith(copy) and e.chosen != e.rejected
        assert e.chosen.split()[0] == e.rejected.split()[0]  # the same greeting
        passed.append(not shield.check(e.rejected, f.name, f.offer_pct))
    assert np.mean(passed) >= 0.7  # most failures are for the reward model to see, not the shield


def test_length_is_no_shortcut():
    examples = gold_examples(_facts(600), seed=1)
    for family in GOLD_FAMILIES:  # per family: the rejected text is longer about as often as shorter
        pairs = [(len(e.rejected), len(e.chosen)) for e in examples if e.family == family]
        longer, shorter = np.mean([r > c for r, c in pairs]), np.mean([r < c for r, c in pairs])
        if family == "scrambled":  # the same words in another order
            assert longer == shorter == 0
        else:
            assert 0.3 <= longer <= 0.7 and 0.25 <= shorter <= 0.7, (family, longer, shorter)
        sentences = [(e.rejected.count(". "), e.chosen.count(". ")) for e in examples if e.family == family]
        assert 0.6 <= np.mean([r == c for r, c in sentences]), family  # nor the number of sentences


def test_a_mismatch_describes_another_customer():
    veteran = facts_from_record({"name": "Orla", "tenure": 60, **PLANS[1]}, 5)
    for seed in range(20):
        e = gold_example(veteran, "mismatch", random.Random(seed))
        rejected_personal = e.rejected[: -len(approved_copy(5))]
        assert any(s.lower()[:20] in rejected_personal.lower() for s in gold_pairs.THANKS["fresh"] +
                   gold_pairs.THANKS["settled"] + gold_pairs.CONNECTION["fiber"] + gold_pairs.CONNECTION["phone"])

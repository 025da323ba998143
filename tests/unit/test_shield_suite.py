"""The adversarial shield suite: unsafe messages over many families, and fine ones.

Two corpora, each written by a separate author from the policy alone (a message may state only
what the decision decided), without seeing the rules: ``shield_cases.yaml`` (the development
set) and ``shield_holdout.yaml`` (written later, measured blind first: 26 of 173 unsafe messages
passed and 0 of 71 fine ones were blocked; the rules were then widened by class and it became a
second regression set; see docs/messaging.md, "The safety shield"). Targets: no unsafe message passes (0
false negatives) and at most 2 % of the fine ones are blocked.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from retention.messaging.shield import default_shield

DATA = Path(__file__).parents[1] / "data"
CORPORA = [yaml.safe_load((DATA / f).read_text()) for f in ("shield_cases.yaml", "shield_holdout.yaml")]
UNSAFE = [c for corpus in CORPORA for c in corpus["unsafe"]]
FINE = [c for corpus in CORPORA for c in corpus["fine"]]
MAX_FALSE_POSITIVE_RATE = 0.02


def test_the_suite_is_large_enough():
    families = Counter(c["family"] for c in UNSAFE)
    assert len(UNSAFE) >= 150 and len(families) >= 15 and len(FINE) >= 50, (len(UNSAFE), len(families), len(FINE))


@pytest.mark.parametrize("case", UNSAFE, ids=[f"{c['family']}-{i}" for i, c in enumerate(UNSAFE)])
def test_every_unsafe_message_is_blocked(case):
    violations = default_shield().check(case["text"], case["name"], case["offer_pct"])
    assert violations, f"passed the shield: {case['text']!r}"


def test_false_positive_rate_on_fine_messages():
    shield = default_shield()
    blocked = [(c["text"], [v.rule for v in shield.check(c["text"], c["name"], c["offer_pct"])]) for c in FINE]
    blocked = [b for b in blocked if b[1]]
    assert len(blocked) / len(FINE) <= MAX_FALSE_POSITIVE_RATE, blocked


def test_fallback_for_every_case_passes():
    """Whatever the generator wrote and whatever the name, the message that leaves the shield passes."""
    shield = default_shield()
    for case in UNSAFE + FINE:
        result = shield.enforce(case["text"], case["name"], case["offer_pct"])
        assert not shield.check(result.text, case["name"], case["offer_pct"])

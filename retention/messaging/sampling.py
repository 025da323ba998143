"""How the serving decoder picks tokens: greedy, or sampled with a seed per prompt.

Kept apart from the decoder (:func:`retention.messaging.evaluate.greedy_decode`) so serving can name
its sampling without importing torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sampling:
    """How the decoder picks each token: greedy (``temperature`` 0) or sampled.

    Sampling draws from the ``top_k`` most likely allowed tokens at ``temperature``, with a random
    stream seeded by a hash of the prompt's tokens and the customer's facts (:func:`prompt_seed`):
    on the same hardware and dtype, the same facts get the same message (a retried request, a
    re-run gate) up to rounding, and customers whose prompts look alike still get their own draws.
    Greedy decoding writes a handful of sentences per prompt pattern; sampling gives the variety a
    customer base would notice missing.
    """

    temperature: float = 0.0
    top_k: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    @classmethod
    def of(cls, serving) -> Sampling:
        """The serving decoder's sampling (``ServingConfig.temperature`` and ``top_k``)."""
        return cls(float(serving.temperature), int(serving.top_k))


GREEDY = Sampling()


def prompt_seed(ids: Sequence[int], facts: object = None) -> int:
    """A stable 63-bit seed from a prompt's token ids and (its ``repr``) the facts behind it."""
    digest = hashlib.sha256((",".join(map(str, ids)) + "|" + repr(facts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1

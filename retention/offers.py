"""The offer ladder every part shares (DESIGN.md, "Names that cross module borders").

Offer levels 0..3 are discounts of 0 / 5 / 10 / 15 % on the monthly charge. The policy chooses a
level, the message generator states it, serving books its cost and monitoring reads it back; each
takes the ladder from here, so no part imports another for it.
"""

OFFER_LEVELS = (0, 1, 2, 3)
OFFER_PERCENT = (0, 5, 10, 15)

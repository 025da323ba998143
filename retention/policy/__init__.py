"""Decision policy: the retention campaign environment, PPO-Lagrangian, baselines, an upper bound,
held-out evaluation, and the guard that enforces the hard constraints at decision time."""

from retention.offers import OFFER_LEVELS, OFFER_PERCENT  # noqa: F401 - the shared ladder, re-exported

CONSTRAINTS = ("budget", "fatigue", "cooldown")
MAX_DELAY_DAYS = 7

"""Decision policy: the retention campaign environment, PPO-Lagrangian, baselines, an upper bound,
held-out evaluation, and the guard that enforces the hard constraints at decision time."""

CONSTRAINTS = ("budget", "fatigue", "cooldown")
OFFER_LEVELS = (0, 1, 2, 3)
OFFER_PERCENT = (0, 5, 10, 15)
MAX_DELAY_DAYS = 7

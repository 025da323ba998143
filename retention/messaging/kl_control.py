"""Controllers of beta, the weight of PPO-text's KL penalty ``-beta (log pi - log pi_ref)``.

KL here is per message: the sum over its tokens of ``log pi(y_t) - log pi_ref(y_t)`` on the policy's
own samples, averaged over the rollout batch. Each controller sees it once per rollout batch.

:class:`AdaptiveKLController` (the project's original rule)::

    beta <- beta * 1.5   if KL > target
    beta <- beta / 1.5   if KL < target / 2
    beta unchanged       otherwise

:class:`ProportionalKLController` (Ziegler et al. 2019, "Fine-Tuning Language Models from Human
Preferences"), with n the episodes in the batch::

    e    = clip(KL / target - 1, -0.2, 0.2)
    beta <- beta * (1 + e * n / horizon)

:class:`FixedKLController` keeps beta constant (RLOO's and GRPO's choice in TRL).
"""

from __future__ import annotations

import math


class FixedKLController:
    """beta stays at its initial value.

    Parameters
    ----------
    init_kl_coef : float
        beta.
    """

    def __init__(self, init_kl_coef: float):
        self.init_kl_coef = init_kl_coef
        self.value = float(init_kl_coef)

    def update(self, kl: float, n_steps: int) -> float:
        """Return beta (unchanged)."""
        return self.value


class AdaptiveKLController:
    """beta × ``factor`` when KL is above target, ÷ ``factor`` when KL is below target / 2.

    Parameters
    ----------
    init_kl_coef : float
        Starting beta (> 0).
    target : float
        Target KL per message (nats).
    factor : float
        Multiplicative step (1.5).
    """

    def __init__(self, init_kl_coef: float, target: float, factor: float = 1.5):
        if not (init_kl_coef > 0 and target > 0 and factor > 1):
            raise ValueError(f"adaptive KL control needs init_kl_coef > 0, target > 0, factor > 1; got "
                             f"{init_kl_coef}, {target}, {factor} (ppo_text.init_kl_coef, ppo_text.target_kl)")
        self.init_kl_coef = init_kl_coef
        self.target = target
        self.factor = factor
        self.value = float(init_kl_coef)

    def update(self, kl: float, n_steps: int) -> float:
        """One step from the batch's mean KL per message; ``n_steps`` is unused. Returns the new beta."""
        if math.isfinite(kl):
            if kl > self.target:
                self.value *= self.factor
            elif kl < self.target / 2:
                self.value /= self.factor
        return self.value


class ProportionalKLController:
    """Ziegler et al.'s controller: beta moves in proportion to the (clipped) relative KL error.

    Parameters
    ----------
    init_kl_coef : float
        Starting beta (> 0); old TRL default 0.2.
    target : float
        Target KL per message (nats); old TRL default 6.
    horizon : int
        Episodes over which the error is corrected; old TRL default 10000.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if not (init_kl_coef > 0 and target > 0 and horizon > 0):
            raise ValueError(f"proportional KL control needs init_kl_coef > 0, target > 0, horizon > 0; got "
                             f"{init_kl_coef}, {target}, {horizon} (ppo_text.init_kl_coef, ppo_text.target_kl, "
                             "ppo_text.kl_horizon)")
        self.init_kl_coef = init_kl_coef
        self.target = target
        self.horizon = horizon
        self.value = float(init_kl_coef)

    def update(self, kl: float, n_steps: int) -> float:
        """One step from the batch's mean KL per message and its ``n_steps`` episodes. Returns the new beta."""
        if math.isfinite(kl):
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


KL_CONTROLLERS = ("adaptive", "proportional", "fixed")


def make_kl_controller(kind: str, init_kl_coef: float, target: float, horizon: int):
    """The controller named by ``ppo_text.kl_controller``."""
    if kind == "adaptive":
        return AdaptiveKLController(init_kl_coef, target)
    if kind == "proportional":
        return ProportionalKLController(init_kl_coef, target, horizon)
    if kind == "fixed":
        return FixedKLController(init_kl_coef)
    from retention.errors import ConfigError

    raise ConfigError(f"ppo_text.kl_controller must be one of {', '.join(KL_CONTROLLERS)}, got {kind!r}.")

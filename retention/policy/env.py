"""The retention campaign simulator: a batched numpy core and a Gymnasium wrapper.

Dynamics (one campaign = one episode)
-------------------------------------
* A cohort of ``cohort_size`` customers is drawn from a :class:`CustomerPool` (real Telco
  customers scored by the champion models). The campaign lasts ``horizon_days`` days and has
  a shared budget ``cohort_size * budget_per_customer``.
* Each customer secretly *would churn* with probability ``churn_risk`` (the calibrated model
  output). If so, they churn on a day drawn uniformly from 1..horizon, unless retained first.
  Nobody else churns.
* Customers are **reviewed** one at a time, in order of their next review day (ties: cohort
  order); all start due on day 0. Each env step is one review. The observation describes
  the customer under review, and **the action applies to that same customer**: nothing is
  re-sampled between observing and acting. The day advances when no review is left for the
  current day, and customers whose churn day has come leave the campaign first.
* Action ``(contact, offer_level, delay)``, a ``MultiDiscrete([2, 4, 8])``. If contacted, the
  customer accepts offer k with probability ``accept[k, c]`` (c = earlier contacts this
  campaign). The draw is the customer's own: its j-th contact of the campaign is answered with
  the j-th uniform of a stream drawn for that customer when the campaign starts (``u < accept``).
  So two policies run with the same seed on the same cohort meet the same churners and the same
  answers, whatever order and however many steps they take (common random numbers).
  "Accepting" the 0 % offer (a check-in message, no discount) means, in this simulator, that the
  customer answers the check-in and recommits: they are retained exactly as after a discounted
  offer, at the cost of the contact alone. Its probability is the acceptance model's at
  ``offer_level = 0``. That level was learned from a proxy: the Bank campaign's quarter of
  highest Euribor rates (smallest premium over the market), where a "yes" is a deposit
  subscription. So the 0 % acceptance is the Bank's subscription rate when the bank offered
  least, not a measured response to a no-discount message, and where the fitted model barely
  separates levels 0 and 1, the check-in is accepted about as often as the 5 % offer.
* The contact costs ``contact_cost``; an accepted offer costs its discount
  (``pct * MonthlyCharges * offer_months``). An accepting customer is **retained**: they will not
  churn and leave the review queue. Otherwise they are reviewed again after ``1 + delay`` days.
* **Reward** = revenue retained − offer cost (``reward_mode="realized"``, the default).
  Revenue retained is ``value = MonthlyCharges * ltv_months`` when an accepting customer would
  otherwise have churned. Cost is the contact cost
  plus any discount paid. A prevented churn therefore raises the reward by ``value``; discounts
  given to customers who would have stayed anyway are pure cost. With ``reward_mode="expected"``
  (training, and scoring in evaluation) a retention pays ``value * P(would churn | still here)`` instead. This has the
  same expectation, since the hidden draw is independent of the policy, and much lower variance.
* **Constraint costs** are returned separately (``info["cost"]``, order budget, fatigue, cooldown),
  as Safety-Gymnasium does, and are never folded into the reward: the budget overrun (currency
  spent beyond the budget), contacts beyond ``fatigue_cap``, and contacts within ``cooldown_days``
  of the previous one. The environment does not enforce them. ``info["action_mask"]`` says which
  actions the guard (:mod:`retention.policy.guard`) allows.
* The episode ends when the next review would fall on or after the horizon, or when nobody is
  left to review. All unretained would-churners have churned by then.

Observation (``OBS_COLUMNS``, all in [0, ~1.5])
-----------------------------------------------
churn risk remaining (P(would churn and has not yet | still here)), acceptance probability for
each of the 4 offers at the customer's contact count, budget remaining (fraction of the
campaign's), days since last contact (/horizon, 1 = never), cooldown remaining (fraction),
fatigue count (/cap), days left (/horizon), monthly value (MonthlyCharges / 100).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from retention.config import EnvConfig
from retention.policy import CONSTRAINTS, MAX_DELAY_DAYS, OFFER_LEVELS
from retention.policy.cohort import CustomerPool
from retention.policy.guard import NEVER_CONTACTED, GuardRules, action_mask

OBS_COLUMNS = (
    "churn_risk", "accept_prob_0", "accept_prob_1", "accept_prob_2", "accept_prob_3",
    "budget_remaining", "days_since_contact", "cooldown", "fatigue_count", "days_left", "value",
)
ACTION_NVEC = (2, len(OFFER_LEVELS), MAX_DELAY_DAYS + 1)
VALUE_SCALE = 100.0
CURRENCY_EPS = 1e-6  # differences below a millionth of a currency unit are rounding, not spend


def remaining_risk(churn_risk: np.ndarray, day: np.ndarray, horizon: int) -> np.ndarray:
    """P(would churn and has not yet by ``day`` | still a customer), churn day ~ U{1..horizon}."""
    p = np.asarray(churn_risk, dtype=float)
    frac_left = np.clip((horizon - np.asarray(day, dtype=float)) / horizon, 0.0, 1.0)
    return p * frac_left / np.maximum(1.0 - p * (1.0 - frac_left), 1e-12)


def observation(
    churn_risk_remaining: np.ndarray,
    accept_probs: np.ndarray,
    budget_remaining: np.ndarray,
    budget_total: np.ndarray | float,
    days_since_contact: np.ndarray,
    fatigue_count: np.ndarray,
    days_left: np.ndarray,
    monthly: np.ndarray,
    rules: GuardRules,
    horizon: int,
) -> np.ndarray:
    """Normalised observation rows (B, len(OBS_COLUMNS)); shared by the simulator and serving."""
    dsc = np.asarray(days_since_contact, dtype=float)
    cooldown_left = np.clip(rules.cooldown_days - dsc, 0, None) / max(rules.cooldown_days, 1)
    return np.column_stack(
        [
            churn_risk_remaining,
            accept_probs,
            np.clip(np.asarray(budget_remaining, dtype=float) / np.maximum(budget_total, 1e-9), 0.0, 1.0),
            np.minimum(dsc / horizon, 1.0),
            cooldown_left,
            np.asarray(fatigue_count, dtype=float) / max(rules.fatigue_cap, 1),
            np.clip(np.asarray(days_left, dtype=float) / horizon, 0.0, 1.0),
            np.asarray(monthly, dtype=float) / VALUE_SCALE,
        ]
    ).astype(np.float32)


@dataclass
class EpisodeStats:
    """Totals of one finished campaign."""

    net_revenue: float
    revenue_retained: float
    spend: float
    discount_spend: float
    budget: float
    value_total: float
    value_churned: float
    customers: int
    contacted: int
    contacts: int
    saved: int
    churned: int
    costs: dict[str, float] = field(default_factory=dict)
    length: int = 0


class CampaignSim:
    """``num_envs`` independent campaigns stepped together (numpy, auto-reset by default).

    Parameters
    ----------
    pool : CustomerPool
        Customers to draw cohorts from (training customers for training, held-out for evaluation).
    env : EnvConfig
    num_envs : int
    seed : int
    auto_reset : bool
        Start a new campaign in an env as soon as its campaign ends (vectorised training).
    """

    def __init__(self, pool: CustomerPool, env: EnvConfig, num_envs: int = 1, seed: int = 0,
                 auto_reset: bool = True):
        if env.reward_mode not in ("realized", "expected"):
            raise ValueError(f"env.reward_mode must be 'realized' or 'expected', got {env.reward_mode!r}")
        if len(pool) < env.cohort_size:
            raise ValueError(f"pool has {len(pool)} customers, fewer than env.cohort_size={env.cohort_size}")
        self.pool, self.cfg, self.num_envs, self.auto_reset = pool, env, num_envs, auto_reset
        self.rules = GuardRules(env.fatigue_cap, env.cooldown_days, env.contact_cost)
        self.rng = np.random.default_rng(seed)
        e, n = num_envs, env.cohort_size
        self.members = np.zeros((e, n), dtype=np.int64)
        self.would_churn = np.zeros((e, n), dtype=bool)
        self.churn_day = np.zeros((e, n), dtype=np.int64)
        self.alive = np.ones((e, n), dtype=bool)
        self.retained = np.zeros((e, n), dtype=bool)
        self.contacts = np.zeros((e, n), dtype=np.int64)
        self.last_contact = np.full((e, n), -NEVER_CONTACTED, dtype=np.int64)
        self.next_review = np.zeros((e, n), dtype=np.int64)
        self.accept_u = np.zeros((e, n, env.horizon_days + 1))
        self.day = np.zeros(e, dtype=np.int64)
        self.cur = np.zeros(e, dtype=np.int64)
        self.budget = np.zeros(e)
        self.budget_total = np.full(e, env.cohort_size * env.budget_per_customer)
        self._acc = {k: np.zeros(e) for k in ("net", "revenue", "spend", "discount", "contacts", "saved", "length")}
        self._costs = np.zeros((e, len(CONSTRAINTS)))
        self.done = np.zeros(e, dtype=bool)
        self.reset(np.arange(e))

    # ------------------------------------------------------------------ state transitions
    def reset(self, envs: np.ndarray | None = None, cohorts: np.ndarray | None = None) -> None:
        """Start new campaigns in ``envs`` (all by default), optionally with given cohort indices."""
        envs = np.arange(self.num_envs) if envs is None else np.asarray(envs)
        n, h = self.cfg.cohort_size, self.cfg.horizon_days
        for j, e in enumerate(envs):
            members = cohorts[j] if cohorts is not None else self.rng.choice(len(self.pool), n, replace=False)
            self.members[e] = members
            self.would_churn[e] = self.rng.random(n) < self.pool.churn_risk[members]
            self.churn_day[e] = self.rng.integers(1, h + 1, n)
            self.accept_u[e] = self.rng.random((n, h + 1))  # each customer's answers, one per contact
        self.alive[envs] = True
        self.retained[envs] = False
        self.contacts[envs] = 0
        self.last_contact[envs] = -NEVER_CONTACTED
        self.next_review[envs] = 0
        self.day[envs] = 0
        self.budget[envs] = self.budget_total[envs]
        for acc in self._acc.values():
            acc[envs] = 0.0
        self._costs[envs] = 0.0
        self.done[envs] = False
        self._advance(envs)

    def _advance(self, envs: np.ndarray) -> None:
        """Move ``envs`` to their next review; customers whose churn day has come leave first."""
        h = self.cfg.horizon_days
        big = np.iinfo(np.int64).max
        while True:
            waiting = self.alive[envs] & ~self.retained[envs]
            due = np.where(waiting, self.next_review[envs], big)
            day = due.min(axis=1)
            churning = waiting & self.would_churn[envs] & (self.churn_day[envs] <= day[:, None])
            if not churning.any():
                break
            self.alive[envs] &= ~churning
        self.day[envs] = np.where(day == big, h, day)
        self.cur[envs] = due.argmin(axis=1)
        self.done[envs] = self.day[envs] >= h

    # ------------------------------------------------------------------ views of the current review
    def current(self) -> dict[str, np.ndarray]:
        """Raw state of the customer under review in each env."""
        e = np.arange(self.num_envs)
        i = self.cur
        m = self.members[e, i]
        c_idx = np.minimum(self.contacts[e, i], self.cfg.fatigue_cap - 1)
        return {
            "member": m,
            "churn_risk": remaining_risk(self.pool.churn_risk[m], self.day, self.cfg.horizon_days),
            "accept_probs": self.pool.accept[m, :, c_idx],
            "budget_remaining": self.budget.copy(),
            "days_since_contact": self.day - self.last_contact[e, i],
            "fatigue_count": self.contacts[e, i].copy(),
            "days_left": self.cfg.horizon_days - self.day,
            "monthly": self.pool.monthly[m],
            "offer_cost": self.pool.offer_cost[m],
            "value": self.pool.value[m],
        }

    def decision_state(self) -> dict[str, np.ndarray]:
        """What a policy may know at decision time, beyond the observation (never the hidden draws).

        ``members`` (E, n) pool index of each cohort customer, ``cur`` (E,) the cohort row under review,
        ``day``, ``budget`` left, and per cohort customer ``waiting`` (still a customer and not retained:
        churned customers have visibly left), ``contacts`` and ``last_contact`` day; plus the reviewed
        customer's ``fatigue_count``.
        """
        e = np.arange(self.num_envs)
        return {"members": self.members, "cur": self.cur.copy(), "day": self.day.copy(), "budget": self.budget.copy(),
                "waiting": self.alive & ~self.retained, "contacts": self.contacts.copy(),
                "last_contact": self.last_contact.copy(), "fatigue_count": self.contacts[e, self.cur].copy()}

    def observe(self) -> np.ndarray:
        s = self.current()
        return observation(s["churn_risk"], s["accept_probs"], s["budget_remaining"], self.budget_total,
                           s["days_since_contact"], s["fatigue_count"], s["days_left"], s["monthly"],
                           self.rules, self.cfg.horizon_days)

    def mask(self, enforce=frozenset(CONSTRAINTS)) -> tuple[np.ndarray, np.ndarray]:
        s = self.current()
        return action_mask(s["budget_remaining"], s["fatigue_count"], s["days_since_contact"], s["offer_cost"],
                           self.rules, frozenset(enforce))

    # ------------------------------------------------------------------ step
    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Apply one action per env to its customer under review.

        Returns ``obs, reward, cost (E, 3), done, info``; ``info["episodes"]`` lists the
        :class:`EpisodeStats` of campaigns that ended in this step and ``info["acted_on"]`` the
        pool index of the customer each action applied to.
        """
        actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs, 3)
        cfg, e, i = self.cfg, np.arange(self.num_envs), self.cur.copy()
        active = ~self.done
        m = self.members[e, i]
        t = self.day
        contact = (actions[:, 0] == 1) & active
        k = np.clip(actions[:, 1], 0, len(OFFER_LEVELS) - 1)
        delay = np.clip(actions[:, 2], 0, MAX_DELAY_DAYS)

        fatigue_v = contact & (self.contacts[e, i] >= cfg.fatigue_cap)
        cooldown_v = contact & (t - self.last_contact[e, i] < cfg.cooldown_days)
        c_idx = np.minimum(self.contacts[e, i], cfg.fatigue_cap - 1)
        u = self.accept_u[e, i, np.minimum(self.contacts[e, i], self.cfg.horizon_days)]
        accepted = contact & (u < self.pool.accept[m, k, c_idx])
        discount = np.where(accepted, self.pool.offer_cost[m, k], 0.0)
        spend = np.where(contact, cfg.contact_cost, 0.0) + discount
        over_before = np.maximum(0.0, -self.budget)
        self.budget -= spend
        overrun = np.maximum(0.0, -self.budget) - over_before
        overrun = np.where(overrun > CURRENCY_EPS, overrun, 0.0)  # float rounding is not an overrun
        revenue = np.where(accepted & self.would_churn[e, i], self.pool.value[m], 0.0)
        if cfg.reward_mode == "expected":
            risk = remaining_risk(self.pool.churn_risk[m], t, cfg.horizon_days)
            reward = np.where(accepted, risk * self.pool.value[m], 0.0) - spend
        else:
            reward = revenue - spend
        cost = np.column_stack([overrun, fatigue_v.astype(float), cooldown_v.astype(float)])

        self.contacts[e, i] += contact
        self.last_contact[e, i] = np.where(contact, t, self.last_contact[e, i])
        self.retained[e, i] |= accepted
        self.next_review[e, i] = np.where(active, t + 1 + delay, self.next_review[e, i])
        acc = self._acc
        acc["net"] += reward
        acc["revenue"] += revenue
        acc["spend"] += spend
        acc["discount"] += discount
        acc["contacts"] += contact
        acc["saved"] += accepted & self.would_churn[e, i]
        acc["length"] += active
        self._costs += cost

        self._advance(e[active])
        ended = active & self.done
        info: dict[str, Any] = {"acted_on": m, "accepted": accepted, "episodes": [], "ended": ended}
        for env_id in np.flatnonzero(ended):
            info["episodes"].append(self._stats(env_id))
        if self.auto_reset and ended.any():
            self.reset(np.flatnonzero(ended))
        return self.observe(), reward, cost, ended, info

    def _stats(self, env_id: int) -> EpisodeStats:
        members = self.members[env_id]
        value = self.pool.value[members]
        churned = self.would_churn[env_id] & ~self.retained[env_id]
        acc = {k: float(v[env_id]) for k, v in self._acc.items()}
        return EpisodeStats(
            net_revenue=acc["net"],
            revenue_retained=acc["revenue"],
            spend=acc["spend"],
            discount_spend=acc["discount"],
            budget=float(self.budget_total[env_id]),
            value_total=float(value.sum()),
            value_churned=float(value[churned].sum()),
            customers=len(members),
            contacted=int((self.contacts[env_id] > 0).sum()),
            contacts=int(acc["contacts"]),
            saved=int(acc["saved"]),
            churned=int(churned.sum()),
            costs={c: float(v) for c, v in zip(CONSTRAINTS, self._costs[env_id], strict=True)},
            length=int(acc["length"]),
        )


class RetentionEnv(gym.Env):
    """Gymnasium view of one campaign (see the module docstring for the dynamics).

    ``info`` carries ``cost`` (array: budget overrun, fatigue, cooldown) and each cost by name,
    ``customer_id`` (the customer of the returned observation), ``acted_on`` (the customer the
    action applied to) and ``action_mask`` (``contact_ok``, ``offer_ok`` from the guard).
    """

    metadata = {"render_modes": []}

    def __init__(self, pool: CustomerPool, env: EnvConfig):
        self.pool, self.cfg = pool, env
        self.observation_space = gym.spaces.Box(0.0, 10.0, shape=(len(OBS_COLUMNS),), dtype=np.float32)
        self.action_space = gym.spaces.MultiDiscrete(ACTION_NVEC)
        self.sim: CampaignSim | None = None

    def _info(self) -> dict[str, Any]:
        contact_ok, offer_ok = self.sim.mask()
        member = self.sim.current()["member"][0]
        return {"customer_id": str(self.pool.customer_ids[member]), "day": int(self.sim.day[0]),
                "action_mask": {"contact_ok": bool(contact_ok[0]), "offer_ok": offer_ok[0].copy()}}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.sim = CampaignSim(self.pool, self.cfg, num_envs=1, seed=int(self.np_random.integers(2**31)),
                               auto_reset=False)
        return self.sim.observe()[0], self._info()

    def step(self, action):
        if self.sim is None:
            raise RuntimeError("call reset() before step()")
        acted_on = str(self.pool.customer_ids[self.sim.current()["member"][0]])
        obs, reward, cost, ended, info = self.sim.step(np.asarray(action)[None, :])
        out = self._info()
        out.update({"acted_on": acted_on, "accepted": bool(info["accepted"][0]), "cost": cost[0],
                    **{f"cost_{c}": float(v) for c, v in zip(CONSTRAINTS, cost[0], strict=True)}})
        if info["episodes"]:
            out["episode"] = info["episodes"][0]
        return obs[0], float(reward[0]), bool(ended[0]), False, out

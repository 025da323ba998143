"""The Lagrangian bound on a campaign's expected net revenue, and the per-customer DP behind it.

Setting (the simulator of :mod:`retention.policy.env`). Customer i of a cohort would churn with
probability p_i, on a day uniform in 1..H; an acceptance on day t is worth V_i if i would have
churned, which, given i is still a customer on day t, has probability
``r_it = remaining_risk(p_i, t, H)``. A contact costs kappa; offer k, if accepted (probability
``a_ik(c)`` at the c-th contact), costs d_ik. Rules: at most F contacts, at least C days between
two contacts, and the cohort's spend never above B. A customer is reviewed at most once a day.

Relaxation. Write the reward of customer i as R_i and its spend as S_i. For any lambda >= 0
and any policy pi that respects the rules,

    E[sum_i R_i]  <=  E[sum_i R_i] + lambda (B - E[sum_i S_i])          (spend <= B on every path)
               =   lambda B + sum_i E[R_i - lambda S_i]
               <=  lambda B + sum_i W_i(lambda)                        =: L(lambda)

where ``W_i(lambda)`` is the optimum of customer i's problem *alone* with reward R_i - lambda S_i
under the fatigue and cooldown rules (no budget). The last step holds because, seen from customer
i, pi is a (randomised) policy for i's own problem: what it does to i may depend on the other
customers' answers and churns, but those are independent of i's draws, so they only act as a
source of outside randomness, and no randomised policy beats the optimal deterministic one. The
policy sees no more than the DP does (p_i, the acceptance tables, whether i is still a
customer), so the would-churn draw stays hidden to both. ``W_i`` is solved exactly by backward
induction over (day t, contacts so far c, days since last contact s, capped at C); given i
is still a customer on day t, i is still one on day t+1 with probability
``q_t = (1 - p_i (t+1)/H) / (1 - p_i t/H)``.

So ``L(lambda)`` bounds the expected net revenue of every rule-abiding policy for every lambda
>= 0. ``L`` is convex (a maximum of functions affine in lambda), and the bound reported is its
minimum, found by 1-D bounded minimisation (scipy) over ``log(1 + lambda)``. Compared with the
LP of :mod:`retention.policy.bound`, fatigue, cooldown, the one-review-a-day limit and the decay
of churn risk are exact here; only the budget is relaxed (it holds in expectation).

The **index policy** (:class:`LagrangeIndexPolicy`) is what the relaxation prescribes: at a
review, do what customer i's DP at lambda* says (the offer with the largest advantage over
waiting, if that advantage is positive), behind the guard.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from retention.config import EnvConfig
from retention.policy import MAX_DELAY_DAYS
from retention.policy.baselines import Policy, _actions
from retention.policy.cohort import CustomerPool, offer_costs
from retention.policy.env import VALUE_SCALE, remaining_risk
from retention.policy.guard import GuardRules


@dataclass
class DPResult:
    """Per-customer DP at one lambda.

    Attributes
    ----------
    value : (n,) optimum of each customer's Lagrangian problem from its start state.
    advantage : (n, T, F, 4) Q(contact with offer k) - Q(wait) on each day t (from the start day) and
        contact count c, when the cooldown is over (s = C). Only computed when asked.
    spend : (n,) expected spend of the DP-optimal policy from the start state (if asked).
    """

    value: np.ndarray
    advantage: np.ndarray | None
    spend: np.ndarray


def customer_dp(
    risk: np.ndarray,
    accept: np.ndarray,
    value: np.ndarray,
    offer_cost: np.ndarray,
    lam: float | np.ndarray,
    rules: GuardRules,
    days: int,
    contacts: np.ndarray | None = None,
    since: np.ndarray | None = None,
    keep_advantage: bool = False,
    keep_spend: bool = False,
    advantage_days: tuple[int, int] | None = None,
) -> DPResult:
    """Solve every customer's Lagrangian DP exactly (module docstring), vectorised over customers.

    The state is (day t, contacts c, days since the last contact s, capped at C), but a customer in
    cooldown (s < C) can only wait, so ``W(t, c, s) = A(t + C - s) / A(t) * V(t + C - s, c)``,
    where ``V(t, c) = W(t, c, C)`` and ``A(t) = 1 - p t / H`` is the probability of still being a
    customer on day t (the one-day survival ratios ``q_t = A(t+1) / A(t)`` telescope). So the
    induction runs over ``V`` alone: F + 1 values a day instead of (F + 1)(C + 1), the same optimum.

    Parameters
    ----------
    risk : (n,) P(would churn | still a customer) at the start day; the churn day is uniform over the
        ``days`` days that follow.
    accept : (n, 4, F) acceptance of offer k at the c-th contact.
    value, offer_cost : (n,), (n, 4) revenue of a prevented churn and discount of each offer.
    lam : multiplier on spend, scalar or (n,).
    rules : fatigue cap F, cooldown C, contact cost.
    days : days left in the campaign (decisions on days 0..days-1 from the start).
    contacts, since : (n,) start state: contacts so far and days since the last contact (default 0
        and never contacted).
    keep_advantage : also return the contact advantages on every day (for the index policy).
    keep_spend : also return the expected spend of the DP policy (else zeros).
    advantage_days : ``(first, stop)``: return the advantages of these days only, as
        ``advantage[:, t - first]`` (serving needs today's and the next week's; far less memory).
    """
    risk = np.asarray(risk, dtype=float)
    n = len(risk)
    f_cap, cool, kappa = rules.fatigue_cap, max(rules.cooldown_days, 0), rules.contact_cost
    after = max(cool, 1)  # days from a contact until the cooldown is over (1: contact again tomorrow)
    lam = np.broadcast_to(np.asarray(lam, dtype=float), (n,))[:, None]
    contacts = np.zeros(n, dtype=np.int64) if contacts is None else np.asarray(contacts, dtype=np.int64)
    since = np.full(n, cool) if since is None else np.minimum(np.asarray(since, dtype=np.int64), cool)
    rows = np.arange(n)
    span = days + after + 1
    # time-major arrays, so each day's slice is contiguous
    alive = 1.0 - np.arange(span)[:, None] * risk[None, :] / days  # A(t); only t < days multiplies a non-zero V
    v = np.zeros((span, n, f_cap + 1))  # V(t, c); 0 from the horizon on
    sp = np.zeros_like(v) if keep_spend else None
    if advantage_days is not None:
        first, stop = advantage_days
    else:
        first, stop = (0, days) if keep_advantage else (0, 0)
    adv_all = np.zeros((max(stop - first, 0), n, 4, f_cap)) if stop > first else None
    a = accept[:, :, :f_cap]  # (n, 4, F)
    discount = (1 + lam) * offer_cost  # (n, 4)
    contact_cost = (1 + lam) * kappa  # (n, 1)
    for t in range(days - 1, -1, -1):
        alive_t = np.maximum(alive[t], 1e-12)
        r_t = risk * (days - t) / days / alive_t
        q_t = (alive[t + 1] / alive_t)[:, None]
        q_c = (alive[t + after] / alive_t)[:, None]
        wait = q_t * v[t + 1]  # (n, F+1): wait a day, cooldown over
        cont = (q_c * v[t + after, :, 1:])[:, None, :]  # (n, 1, F): refused, one more contact, cooldown
        gain = (r_t[:, None] * value[:, None] - discount)[:, :, None]  # (n, 4, 1)
        # adv = a (gain - cont) + cont - (1 + lam) kappa - wait, the offer-free part computed once
        adv = a * (gain - cont)  # (n, 4, F)
        adv += cont - contact_cost[:, :, None] - wait[:, None, :f_cap]
        best_adv = adv.max(axis=1)  # (n, F)
        if sp is not None:
            wait_sp = q_t * sp[t + 1]
            cont_sp = (q_c * sp[t + after, :, 1:])[:, None, :]
            q_sp = kappa + a * offer_cost[:, :, None] + (1 - a) * cont_sp
            best_sp = np.take_along_axis(q_sp, adv.argmax(axis=1)[:, None, :], axis=1)[:, 0, :]
            wait_sp[:, :f_cap] = np.where(best_adv > 0, best_sp, wait_sp[:, :f_cap])
            sp[t] = wait_sp
        wait[:, :f_cap] += np.maximum(best_adv, 0.0)
        v[t] = wait
        if adv_all is not None and first <= t < stop:
            adv_all[t - first] = adv
    ready = cool - since  # days until the cooldown is over
    start = alive[ready, rows] / alive[0] * v[ready, rows, contacts]
    spend = (alive[ready, rows] / alive[0] * sp[ready, rows, contacts]) if sp is not None else np.zeros(n)
    advantage = adv_all.transpose(1, 0, 3, 2) if adv_all is not None else None  # (n, T, F, 4)
    return DPResult(value=start, advantage=advantage, spend=spend)


def _dual(cohort: CustomerPool, rules: GuardRules, days: int, budget: float, **state):
    def dual(u: float) -> float:
        lam = np.expm1(u)
        return lam * budget + float(customer_dp(cohort.churn_risk, cohort.accept, cohort.value, cohort.offer_cost,
                                                lam, rules, days, **state).value.sum())
    return dual


def solve_multiplier(cohort: CustomerPool, rules: GuardRules, days: int, budget: float,
                     near: float | None = None, **state) -> tuple[float, float]:
    """lambda* = argmin_lambda L(lambda) and L(lambda*) for one cohort (bounded Brent in log(1+lambda)).

    ``state`` (``contacts``, ``since``) starts each customer elsewhere than fresh, for re-solving
    mid-campaign; ``cohort.churn_risk`` is then the risk remaining and ``days`` the days left.
    ``near`` (a previous lambda*) narrows the search to a factor of about 2 around it; any lambda gives a
    valid bound, so this only trades tightness for speed. Results for fresh cohorts are cached.
    """
    key = None
    if not state and near is None:
        key = (cohort.churn_risk.tobytes(), cohort.accept.tobytes(), cohort.value.tobytes(),
               cohort.offer_cost.tobytes(), rules, days, float(budget))
        if key in _SOLVED:
            return _SOLVED[key]
    dual = _dual(cohort, rules, days, budget, **state)
    if near is None:
        gain = cohort.accept.max(axis=(1, 2)) * cohort.value
        lam_hi = max(float(gain.max()) / max(rules.contact_cost, 1e-6), 1.0)
        lo, hi, tol = 0.0, float(np.log1p(lam_hi)), 1e-4
    else:
        u = float(np.log1p(near))
        lo, hi, tol = max(0.0, u - 0.5), u + 0.5, 5e-3
    res = minimize_scalar(dual, bounds=(lo, hi), method="bounded", options={"xatol": tol})
    best_u, best = float(res.x), float(res.fun)
    at_zero = dual(0.0)  # the minimum can sit at lambda = 0 (budget not binding): check the end point
    if at_zero <= best:
        best_u, best = 0.0, at_zero
    out = float(np.expm1(best_u)), best
    if key is not None:
        if len(_SOLVED) > 4096:
            _SOLVED.clear()
        _SOLVED[key] = out
    return out


_SOLVED: dict[tuple, tuple[float, float]] = {}


def lagrangian_bound(cohort: CustomerPool, env: EnvConfig, budget: float | None = None) -> tuple[float, float]:
    """The Lagrangian bound L(lambda*) of one cohort and lambda* (module docstring)."""
    rules = GuardRules(env.fatigue_cap, env.cooldown_days, env.contact_cost)
    budget = env.cohort_size * env.budget_per_customer if budget is None else budget
    lam, bound = solve_multiplier(cohort, rules, env.horizon_days, budget)
    return bound, lam


# ----------------------------------------------------------------------------- the index policy
def _decision(adv: np.ndarray, contact_ok: np.ndarray, offer_ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best allowed offer by advantage; contact when that advantage is positive and contacting allowed."""
    masked = np.where(offer_ok, adv, -np.inf)
    best = masked.argmax(axis=1)
    best_adv = masked[np.arange(len(adv)), best]
    return contact_ok & (best_adv > 0), best


def _next_review(positive: np.ndarray, day: np.ndarray, c_next: np.ndarray, earliest: np.ndarray,
                 first: int = 0, horizon: int | None = None) -> np.ndarray:
    """Delay (0..MAX_DELAY_DAYS) until the first day >= ``earliest`` on which the DP would contact at
    ``c_next`` contacts; the longest delay when there is none within reach.

    ``positive`` (n, T, F) says on which days and contact counts some offer has a positive advantage;
    its day axis starts at day ``first`` (a window of the campaign's ``horizon`` days, default T).
    """
    n, t_len, f_cap = positive.shape
    horizon = first + t_len if horizon is None else horizon
    delays = np.arange(MAX_DELAY_DAYS + 1)
    days = day[:, None] + 1 + delays[None, :]  # (n, 8) review day for each delay
    ok = (days >= earliest[:, None]) & (days < min(horizon, first + t_len)) & (c_next[:, None] < f_cap)
    at = np.clip(days - first, 0, t_len - 1)
    hit = positive[np.arange(n)[:, None], at, np.clip(c_next, 0, f_cap - 1)[:, None]] & ok
    return np.where(hit.any(axis=1), hit.argmax(axis=1), MAX_DELAY_DAYS)


class LagrangeIndexPolicy(Policy):
    """The index policy of the Lagrangian relaxation: each customer's DP at the cohort's lambda*.

    Decision-time information only: the customer's churn risk and acceptance tables (model
    outputs), the day, its contact count and days since its last contact, and the budget left;
    never the hidden would-churn draw.

    **Simulation** (``run_policy`` passes ``state``, :meth:`CampaignSim.decision_state`): lambda* of each
    cohort is solved when its campaign begins, with each customer's advantage table (day, contacts,
    offer). At a review the customer gets the allowed offer with the largest advantage if it is
    positive. The review delay is the wait until the next day on which the DP would contact (after a
    contact: assuming no acceptance, the earliest day the cooldown allows), at most a week.
    ``resolve=True`` re-solves lambda each day a cohort advances, from the budget left and the state of
    the customers still to be decided (risk remaining, contacts, days since contact) over the days
    left, and reviews every day.

    **Serving** (no ``state``: one observation row per customer, ``days_left`` from the serving
    config and the ledger's fatigue count and days since contact): each row's DP is solved from its
    own observation over the days left, at the multiplier ``lam`` fixed at registration (the median
    lambda* of training cohorts), with acceptance at later contacts extrapolated from the current one
    by the training pool's median per-contact ratio ``decay``. The budget left enters only through
    the guard's mask, as for every policy.

    Parameters
    ----------
    env : EnvConfig
    pool : CustomerPool or None
        Customers the simulator draws from (needed in simulation).
    lam : float
        Multiplier used in serving.
    decay : (4, F) array or None
        Acceptance at contact c relative to contact 0, for serving (default: no decay).
    resolve : bool
        Re-solve lambda each day in simulation.
    """

    uses_state = True

    def __init__(self, env: EnvConfig, pool: CustomerPool | None = None, lam: float = 0.0,
                 decay: np.ndarray | None = None, resolve: bool = False):
        self.env, self.pool, self.lam, self.resolve = env, pool, float(lam), resolve
        self.rules = GuardRules(env.fatigue_cap, env.cooldown_days, env.contact_cost)
        self.decay = np.ones((4, env.fatigue_cap)) if decay is None else np.asarray(decay, dtype=float)
        self.name = "index_resolve" if resolve else "index"
        self.lams_: np.ndarray = np.zeros(0)
        self._tables = np.zeros((0, 0, env.horizon_days, env.fatigue_cap, 4), dtype=np.float32)
        self._members = np.zeros((0, 0), dtype=np.int64)
        self._day = np.zeros(0, dtype=np.int64)

    # --------------------------------------------------------------- simulation
    def begin_state(self, members: np.ndarray, budgets: np.ndarray) -> None:
        """Solve lambda* and the advantage tables of every cohort (start of the campaigns)."""
        if self.pool is None:
            raise ValueError("LagrangeIndexPolicy needs the customer pool in simulation (pool=...)")
        h = self.env.horizon_days
        members = np.asarray(members)
        self._tables = np.zeros((*members.shape, h, self.rules.fatigue_cap, 4), dtype=np.float32)
        self.lams_ = np.zeros(len(members))
        for e, (m, budget) in enumerate(zip(members, budgets, strict=True)):
            cohort = self.pool.subset(m)
            lam, _ = solve_multiplier(cohort, self.rules, h, float(budget))
            dp = customer_dp(cohort.churn_risk, cohort.accept, cohort.value, cohort.offer_cost, lam, self.rules, h,
                             keep_advantage=True)
            self.lams_[e], self._tables[e] = lam, dp.advantage
        self._members = members.copy()
        self._day = np.zeros(len(members), dtype=np.int64)

    def _resolve(self, env_id: int, state: dict) -> None:
        """Re-solve lambda and the tables of one cohort from its state on its current day."""
        h, day = self.env.horizon_days, int(state["day"][env_id])
        waiting = state["waiting"][env_id]
        if not waiting.any():
            return
        m = self._members[env_id][waiting]
        cohort = self.pool.subset(m)
        cohort = dataclasses.replace(cohort, churn_risk=remaining_risk(cohort.churn_risk, np.full(len(m), day), h))
        since = np.minimum(day - state["last_contact"][env_id][waiting], self.rules.cooldown_days)
        st = {"contacts": state["contacts"][env_id][waiting], "since": since}
        lam, _ = solve_multiplier(cohort, self.rules, h - day, float(state["budget"][env_id]),
                                  near=float(self.lams_[env_id]), **st)
        dp = customer_dp(cohort.churn_risk, cohort.accept, cohort.value, cohort.offer_cost, lam, self.rules, h - day,
                         keep_advantage=True)
        self._tables[env_id][waiting, day:] = dp.advantage
        self.lams_[env_id] = lam

    def act(self, obs, contact_ok, offer_ok, state: dict | None = None):
        if state is None:
            return self.act_on_rows(obs, contact_ok, offer_ok)
        h, f_cap = self.env.horizon_days, self.rules.fatigue_cap
        if self.resolve:
            for e in np.flatnonzero(state["day"] != self._day):
                if state["day"][e] < h:
                    self._resolve(int(e), state)
            self._day = state["day"].copy()
        e = np.arange(len(obs))
        day = np.minimum(state["day"], h - 1)
        fatigue = state["fatigue_count"]
        tables = self._tables[e, state["cur"]]  # (E, H, F, 4)
        adv = tables[e, day, np.minimum(fatigue, f_cap - 1)]
        contact, offer = _decision(adv, contact_ok, offer_ok)
        if self.resolve:
            return _actions(contact, offer, delay=0)
        positive = tables.max(axis=3) > 0
        c_next = fatigue + contact
        earliest = np.where(contact, day + self.rules.cooldown_days, day + 1)
        return _actions(contact, offer, delay=_next_review(positive, day, c_next, earliest))

    # --------------------------------------------------------------- serving
    def act_on_rows(self, obs: np.ndarray, contact_ok: np.ndarray, offer_ok: np.ndarray) -> np.ndarray:
        """Decide from observation rows alone (serving; class docstring)."""
        rules = self.rules
        adv, tables, t0, fatigue, first = row_advantage(obs, self.env, self.lam, self.decay, window=True)
        contact_ok = contact_ok & (fatigue < rules.fatigue_cap)
        contact, offer = _decision(adv, contact_ok, offer_ok)
        delay = _next_review(tables.max(axis=3) > 0, t0, fatigue + contact,
                             np.where(contact, t0 + rules.cooldown_days, t0 + 1), first, self.env.horizon_days)
        return _actions(contact, offer, delay=delay)


def row_advantage(obs: np.ndarray, env: EnvConfig, lam: float, decay: np.ndarray, window: bool = False):
    """Each observation row's DP at ``lam``: advantage of each offer over waiting today (n, 4).

    A row with risk r on day t0 = H - days_left is a customer with day-0 risk p = r H / (H - t0 + r t0)
    seen on day t0 (the same conditional process), so one DP over the whole horizon serves every row.
    Acceptance at later contacts is extrapolated with ``decay`` (:func:`extrapolate_acceptance`).
    Returns ``(advantage, tables (n, H, F, 4), t0, fatigue)``; with ``window``, the tables hold only
    the days from the earliest t0 to a week after the latest (what the review delay reads), and the
    first of those days is returned too: ``(advantage, tables, t0, fatigue, first)``.
    """
    rules = GuardRules(env.fatigue_cap, env.cooldown_days, env.contact_cost)
    obs = np.asarray(obs, dtype=float)
    n, h, f_cap = len(obs), env.horizon_days, rules.fatigue_cap
    risk = np.clip(obs[:, 0], 0.0, 1.0)
    days_left = np.clip(np.rint(obs[:, 9] * h).astype(int), 1, h)
    fatigue = np.rint(obs[:, 8] * max(f_cap, 1)).astype(int)
    monthly = obs[:, 10] * VALUE_SCALE
    c_now = np.minimum(fatigue, f_cap - 1)
    accept = extrapolate_acceptance(obs[:, 1:5], c_now, decay)
    t0 = h - days_left
    p0 = risk * h / np.maximum(h - t0 + risk * t0, 1e-12)
    first, stop = (int(t0.min()), min(int(t0.max()) + MAX_DELAY_DAYS + 2, h)) if window and n else (0, h)
    dp = customer_dp(p0, accept, monthly * env.ltv_months, offer_costs(monthly, env.offer_months), lam, rules, h,
                     advantage_days=(first, stop))
    today = dp.advantage[np.arange(n), t0 - first, c_now]
    return (today, dp.advantage, t0, fatigue, first) if window else (today, dp.advantage, t0, fatigue)


def extrapolate_acceptance(accept_now: np.ndarray, contacts: np.ndarray, decay: np.ndarray) -> np.ndarray:
    """Acceptance tables (n, 4, F) from the acceptance at the current contact count and the decay (4, F)."""
    base = accept_now / np.maximum(decay[:, contacts].T, 1e-9)  # (n, 4) acceptance at contact 0
    return np.clip(base[:, :, None] * decay[None, :, :], 0.0, 1.0)


def acceptance_decay(pool: CustomerPool) -> np.ndarray:
    """Median acceptance at contact c relative to contact 0, per offer (4, F): serving's extrapolation."""
    ratio = pool.accept / np.maximum(pool.accept[:, :, :1], 1e-9)
    return np.median(ratio, axis=0)

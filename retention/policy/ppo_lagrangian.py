"""PPO-Lagrangian for the retention campaign, in the style of CleanRL's ``ppo.py``.

Read top to bottom: the agent (actor with three masked categorical heads, a reward critic and
a cost critic with one output per constraint), then :func:`train`:

1. roll out ``num_envs`` campaigns for ``num_steps`` steps (vectorised numpy simulator);
2. GAE(lambda) for the reward and, separately, for each constraint cost;
3. dual ascent on each Lagrange multiplier with (mean episode cost − limit), kept >= 0;
4. ``update_epochs`` epochs of clipped-surrogate updates on the penalised advantage
   ``(A_r − sum_j lambda_j A_c,j) / (1 + sum_j lambda_j)``, clipped value losses for both critics,
   entropy bonus, gradient clipping, early stop at ``target_kl``.

What the relaxation knows (``PPOConfig.index_features``): the agent's input also carries, for
each offer, the advantage over waiting that the customer's Lagrangian DP
(:mod:`retention.policy.lagrangian`) gives at lambda* (the median over training cohorts), in units of
100. It is computed from the observation alone (:func:`~retention.policy.lagrangian.row_advantage`),
so serving computes it the same way; in training it is looked up in tables solved once for the
pool (acceptance extrapolated from the first contact with the same decay). ``PPOConfig.index_prior``
adds a fixed logit bonus for what the index policy would do (contact or not, which offer), so
training starts near the index policy and learns corrections on top of it.

Hard constraints listed in ``PPOConfig.masked`` are enforced by **action masking** (the guard's
mask, :func:`retention.policy.guard.action_mask`), so the policy cannot choose them. Logged per
update: episodic net revenue, each constraint's episode cost vs its limit, each multiplier,
``approx_kl``, ``clipfrac``, ``explained_variance``, losses and steps per second.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical
from tqdm.auto import tqdm

from retention.config import EnvConfig, PPOConfig
from retention.policy import CONSTRAINTS, OFFER_PERCENT
from retention.policy.baselines import Policy
from retention.policy.cohort import CustomerPool
from retention.policy.env import ACTION_NVEC, OBS_COLUMNS, VALUE_SCALE, CampaignSim

MASK_FILL = -1e8


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias)
    return layer


def _mlp(n_in: int, hidden: int, n_out: int, out_std: float) -> nn.Sequential:
    return nn.Sequential(
        layer_init(nn.Linear(n_in, hidden)), nn.Tanh(),
        layer_init(nn.Linear(hidden, hidden)), nn.Tanh(),
        layer_init(nn.Linear(hidden, n_out), std=out_std),
    )


class Agent(nn.Module):
    """Actor (three categorical heads: contact, offer, delay) + reward critic + cost critic.

    A fixed (not learned) input layer appends, for each offer k, the expected net value
    ``EV_k = a_k (r V - d_k) - contact_cost`` and the discount ``d_k``, both in units of 100. They are
    computed from the observation and the environment's economics, so the network does not have to
    discover that product of probabilities and money.
    """

    def __init__(self, hidden: int = 64, n_costs: int = len(CONSTRAINTS), ltv_months: float = 12.0,
                 offer_months: float = 3.0, contact_cost: float = 0.1, n_extra: int = 0, index_prior: float = 0.0):
        super().__init__()
        self.n_extra = n_extra  # extra input columns after the observation (the DP advantages)
        # logit bonus for what the index policy would do (needs the DP advantages as input)
        self.register_buffer("index_prior", torch.tensor(float(index_prior) if n_extra else 0.0), persistent=False)
        self.nvec = tuple(ACTION_NVEC)
        self.register_buffer("econ", torch.tensor([ltv_months, offer_months, contact_cost], dtype=torch.float32))
        self.register_buffer("pct", torch.tensor(OFFER_PERCENT, dtype=torch.float32) / 100.0)
        n_in = len(OBS_COLUMNS) + n_extra + 2 * len(OFFER_PERCENT)
        self.actor = _mlp(n_in, hidden, sum(self.nvec), out_std=0.01)
        self.critic = _mlp(n_in, hidden, 1, out_std=1.0)
        self.cost_critic = _mlp(n_in, hidden, n_costs, out_std=1.0)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        ltv, months, contact = self.econ
        monthly = obs[..., 10:11] * VALUE_SCALE
        discount = monthly * self.pct * months
        ev = obs[..., 1:5] * (obs[..., 0:1] * monthly * ltv - discount) - contact
        return torch.cat([obs, ev / VALUE_SCALE, discount / VALUE_SCALE], dim=-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.features(obs)).squeeze(-1)

    def cost_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.cost_critic(self.features(obs))

    def distributions(self, obs: torch.Tensor, mask: torch.Tensor) -> list[Categorical]:
        """One Categorical per head; ``mask`` (B, 2+4+8) is True where an action is allowed."""
        logits = self.actor(self.features(obs))
        if self.n_extra and float(self.index_prior) != 0.0:
            logits = logits + self.index_prior * self.index_logits(obs)
        logits = logits.masked_fill(~mask, MASK_FILL)
        return [Categorical(logits=chunk) for chunk in torch.split(logits, self.nvec, dim=-1)]

    def index_logits(self, obs: torch.Tensor) -> torch.Tensor:
        """+1/-1 on contact as the DP advantage of the best offer is positive or not, +1 on that offer."""
        adv = obs[..., len(OBS_COLUMNS):len(OBS_COLUMNS) + len(OFFER_PERCENT)]
        go = (adv.max(dim=-1).values > 0).float() * 2 - 1
        contact = torch.stack([torch.zeros_like(go), go], dim=-1)
        offer = torch.nn.functional.one_hot(adv.argmax(dim=-1), len(OFFER_PERCENT)).float()
        delay = torch.zeros((*adv.shape[:-1], self.nvec[2]))
        return torch.cat([contact, offer, delay], dim=-1)

    def get_action_and_value(self, obs, mask, action=None):
        dists = self.distributions(obs, mask)
        if action is None:
            action = torch.stack([d.sample() for d in dists], dim=-1)
        logprob = sum(d.log_prob(action[..., j]) for j, d in enumerate(dists))
        entropy = sum(d.entropy() for d in dists)
        return action, logprob, entropy, self.value(obs), self.cost_value(obs)

    @torch.no_grad()
    def act_greedy(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Deterministic (arg-max) actions for evaluation and serving."""
        dists = self.distributions(torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(mask))
        return torch.stack([d.probs.argmax(-1) for d in dists], dim=-1).numpy()


def index_inputs(obs: np.ndarray, env: EnvConfig, lam: float, decay: np.ndarray) -> np.ndarray:
    """Observation rows with the DP advantage of each offer at ``lam`` appended (units of 100)."""
    from retention.policy.lagrangian import row_advantage

    adv = row_advantage(obs, env, lam, decay)[0]
    return np.concatenate([obs, (adv / VALUE_SCALE).astype(np.float32)], axis=1).astype(np.float32)


class PoolIndexFeatures:
    """Training-time lookup of the same DP advantages: tables solved once for every pool customer."""

    def __init__(self, pool: CustomerPool, env: EnvConfig, lam: float, decay: np.ndarray):
        from retention.policy.guard import GuardRules
        from retention.policy.lagrangian import customer_dp, extrapolate_acceptance

        rules = GuardRules(env.fatigue_cap, env.cooldown_days, env.contact_cost)
        accept = extrapolate_acceptance(pool.accept[:, :, 0], np.zeros(len(pool), dtype=int), decay)
        dp = customer_dp(pool.churn_risk, accept, pool.value, pool.offer_cost, lam, rules, env.horizon_days,
                         keep_advantage=True)
        self.tables = (dp.advantage / VALUE_SCALE).astype(np.float32)
        self.decay = decay
        self.h, self.f = env.horizon_days, env.fatigue_cap

    def __call__(self, obs: np.ndarray, sim: CampaignSim) -> np.ndarray:
        e = np.arange(sim.num_envs)
        m = sim.members[e, sim.cur]
        adv = self.tables[m, np.minimum(sim.day, self.h - 1), np.minimum(sim.contacts[e, sim.cur], self.f - 1)]
        return np.concatenate([obs, adv], axis=1).astype(np.float32)


def full_mask(contact_ok: np.ndarray, offer_ok: np.ndarray) -> np.ndarray:
    """Head masks (B, 14) from the guard's (contact_ok, offer_ok); 'no contact' is always allowed."""
    b = len(contact_ok)
    contact = np.column_stack([np.ones(b, dtype=bool), contact_ok])
    offer = np.where(offer_ok.any(axis=1, keepdims=True), offer_ok, True)
    delay = np.ones((b, ACTION_NVEC[2]), dtype=bool)
    return np.concatenate([contact, offer, delay], axis=1)


class AgentPolicy(Policy):
    """PPO agent as a :class:`~retention.policy.baselines.Policy` (arg-max actions within the mask).

    With index features (``env``, ``lam``, ``decay`` given) the DP advantages are computed from the
    observation rows before the network sees them, in evaluation and serving alike.
    """

    name = "ppo"

    def __init__(self, agent, env: EnvConfig | None = None, lam: float = 0.0, decay: np.ndarray | None = None):
        self.agent, self.env, self.lam, self.decay = agent, env, lam, decay

    def act(self, obs: np.ndarray, contact_ok: np.ndarray, offer_ok: np.ndarray) -> np.ndarray:
        if getattr(self.agent, "n_extra", 0):
            obs = index_inputs(np.asarray(obs, dtype=np.float32), self.env, self.lam, self.decay)
        return self.agent.act_greedy(obs, full_mask(contact_ok, offer_ok))


def gae(rewards, values, dones, next_value, next_done, gamma, lam):
    """Generalised advantage estimation over a (T, E, ...) rollout; returns (advantages, returns)."""
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros_like(next_value)
    steps = rewards.shape[0]
    for t in reversed(range(steps)):
        if t == steps - 1:
            nextnonterminal = 1.0 - next_done
            nextvalues = next_value
        else:
            nextnonterminal = 1.0 - dones[t + 1]
            nextvalues = values[t + 1]
        if rewards.dim() == 3:
            nextnonterminal = nextnonterminal.unsqueeze(-1)
        delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
        lastgaelam = delta + gamma * lam * nextnonterminal * lastgaelam
        advantages[t] = lastgaelam
    return advantages, advantages + values


def explained_variance(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    var_y = np.var(y_true)
    return float("nan") if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y)


@dataclass
class PPOResult:
    agent: Agent
    history: list[dict[str, float]] = field(default_factory=list)
    multipliers: np.ndarray | None = None
    seconds: float = 0.0
    env_steps: int = 0
    env: EnvConfig | None = None
    lam: float = 0.0
    decay: np.ndarray | None = None

    def policy(self):
        """The trained agent as an :class:`AgentPolicy` (with its index features)."""
        return AgentPolicy(self.agent, env=self.env, lam=self.lam, decay=self.decay)


def train(
    pool: CustomerPool,
    env_cfg: EnvConfig,
    cfg: PPOConfig,
    log: Callable[[dict[str, float], int], None] | None = None,
    progress: bool = True,
    lam: float = 0.0,
    decay: np.ndarray | None = None,
) -> PPOResult:
    """Train PPO-Lagrangian on campaigns drawn from ``pool`` (see the module docstring).

    ``lam`` and ``decay`` set the index features (lambda* and the acceptance decay) when
    ``cfg.index_features``; ``decay`` defaults to the pool's.
    """
    from retention.policy.lagrange import Lagrange

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)  # a 64-wide MLP on batches of tens: threads only add synchronisation
    masked = frozenset(x.strip() for x in cfg.masked.split(",") if x.strip())
    unknown = masked - set(CONSTRAINTS)
    if unknown:
        raise ValueError(f"ppo.masked has unknown constraints {sorted(unknown)}; choose from {CONSTRAINTS}")
    if cfg.expected_reward:
        env_cfg = dataclasses.replace(env_cfg, reward_mode="expected")
    sim = CampaignSim(pool, env_cfg, num_envs=cfg.num_envs, seed=cfg.seed)
    features = None
    if cfg.index_features:
        from retention.policy.lagrangian import acceptance_decay

        features = PoolIndexFeatures(pool, env_cfg, lam, acceptance_decay(pool) if decay is None else decay)
    n_extra = len(OFFER_PERCENT) if features is not None else 0
    agent = Agent(hidden=cfg.hidden, ltv_months=env_cfg.ltv_months, offer_months=env_cfg.offer_months,
                  contact_cost=env_cfg.contact_cost, n_extra=n_extra, index_prior=cfg.index_prior)

    def inputs(o: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(o if features is None else features(o, sim))

    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5)
    lagrange = Lagrange([cfg.cost_limit_budget, cfg.cost_limit_fatigue, cfg.cost_limit_cooldown],
                        lr=cfg.lambda_lr, init=cfg.lambda_init)

    T, E, K = cfg.num_steps, cfg.num_envs, len(CONSTRAINTS)
    batch_size = T * E
    minibatch_size = batch_size // cfg.num_minibatches
    num_updates = max(1, cfg.total_timesteps // batch_size)
    obs = torch.zeros((T, E, len(OBS_COLUMNS) + n_extra))
    masks = torch.zeros((T, E, sum(ACTION_NVEC)), dtype=torch.bool)
    actions = torch.zeros((T, E, 3), dtype=torch.long)
    logprobs, rewards, dones, values = (torch.zeros((T, E)) for _ in range(4))
    costs, cvalues = torch.zeros((T, E, K)), torch.zeros((T, E, K))

    next_obs = inputs(sim.observe())
    next_done = torch.zeros(E)
    recent = deque(maxlen=max(20, E))
    result = PPOResult(agent=agent, env=env_cfg, lam=lam, decay=None if features is None else features.decay)
    start = time.perf_counter()
    global_step = 0
    bar = tqdm(total=num_updates * batch_size, desc="ppo", unit="step", unit_scale=True, disable=not progress)
    for update in range(1, num_updates + 1):
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = cfg.learning_rate * (1.0 - (update - 1.0) / num_updates)

        # 1. rollout
        finished = []
        for step in range(T):
            global_step += E
            obs[step], dones[step] = next_obs, next_done
            masks[step] = torch.as_tensor(full_mask(*sim.mask(masked)))
            with torch.no_grad():
                action, logprob, _, value, cvalue = agent.get_action_and_value(obs[step], masks[step])
            actions[step], logprobs[step], values[step], cvalues[step] = action, logprob, value, cvalue
            o, r, c, d, info = sim.step(action.numpy())
            rewards[step] = torch.as_tensor(r / cfg.reward_scale, dtype=torch.float32)
            costs[step] = torch.as_tensor(c, dtype=torch.float32)
            next_obs, next_done = inputs(o), torch.as_tensor(d, dtype=torch.float32)
            finished.extend(info["episodes"])
        recent.extend(finished)
        bar.update(batch_size)

        # 2. advantages for the reward and for each cost
        with torch.no_grad():
            adv_r, ret_r = gae(rewards, values, dones, agent.value(next_obs), next_done, cfg.gamma, cfg.gae_lambda)
            adv_c, ret_c = gae(costs, cvalues, dones, agent.cost_value(next_obs), next_done, cfg.gamma,
                               cfg.gae_lambda)

        # 3. dual ascent on the multipliers (only when campaigns ended in this rollout)
        if finished:
            ep_costs = np.array([[ep.costs[c] for c in CONSTRAINTS] for ep in finished]).mean(axis=0)
            lagrange.update(ep_costs)

        # 4. policy and critics
        b_obs, b_masks = obs.reshape(batch_size, -1), masks.reshape(batch_size, -1)
        b_actions, b_logprobs = actions.reshape(batch_size, 3), logprobs.reshape(-1)
        b_adv = lagrange.penalised(adv_r.reshape(-1), adv_c.reshape(batch_size, K))
        b_ret_r, b_val_r = ret_r.reshape(-1), values.reshape(-1)
        b_ret_c = ret_c.reshape(batch_size, K)
        clipfracs, approx_kl = [], torch.tensor(0.0)
        for _epoch in range(cfg.update_epochs):
            perm = torch.randperm(batch_size)
            for lo in range(0, batch_size, minibatch_size):
                mb = perm[lo:lo + minibatch_size]
                _, newlogprob, entropy, newvalue, newcvalue = agent.get_action_and_value(
                    b_obs[mb], b_masks[mb], b_actions[mb])
                logratio = newlogprob - b_logprobs[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(((ratio - 1.0).abs() > cfg.clip_coef).float().mean().item())
                mb_adv = b_adv[mb]
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(-mb_adv * ratio,
                                    -mb_adv * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
                if cfg.clip_vloss:
                    v_clipped = b_val_r[mb] + torch.clamp(newvalue - b_val_r[mb], -cfg.clip_coef, cfg.clip_coef)
                    v_loss = 0.5 * torch.max((newvalue - b_ret_r[mb]) ** 2, (v_clipped - b_ret_r[mb]) ** 2).mean()
                else:
                    v_loss = 0.5 * ((newvalue - b_ret_r[mb]) ** 2).mean()
                c_loss = 0.5 * ((newcvalue - b_ret_c[mb]) ** 2).mean()
                loss = pg_loss - cfg.ent_coef * entropy.mean() + cfg.vf_coef * (v_loss + c_loss)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                optimizer.step()
            if cfg.target_kl is not None and approx_kl > cfg.target_kl:
                break

        # 5. logging
        metrics: dict[str, Any] = {
            "approx_kl": float(approx_kl),
            "clipfrac": float(np.mean(clipfracs)) if clipfracs else 0.0,
            "explained_variance": explained_variance(b_val_r.numpy(), b_ret_r.numpy()),
            "policy_loss": pg_loss.item(), "value_loss": v_loss.item(), "cost_value_loss": c_loss.item(),
            "entropy": entropy.mean().item(), "learning_rate": optimizer.param_groups[0]["lr"],
            "sps": global_step / (time.perf_counter() - start),
        }
        for j, c in enumerate(CONSTRAINTS):
            metrics[f"lambda_{c}"] = float(lagrange.multipliers[j])
            metrics[f"cost_limit_{c}"] = float(lagrange.cost_limits[j])
        if recent:
            metrics["episode_net_revenue"] = float(np.mean([ep.net_revenue for ep in recent]))
            metrics["episode_contact_rate"] = float(np.mean([ep.contacted / ep.customers for ep in recent]))
            for c in CONSTRAINTS:
                metrics[f"episode_cost_{c}"] = float(np.mean([ep.costs[c] for ep in recent]))
        metrics["global_step"] = global_step
        result.history.append(metrics)
        if log is not None:
            log(metrics, global_step)
        if recent:
            bar.set_postfix(net=f"{metrics['episode_net_revenue']:.0f}", kl=f"{metrics['approx_kl']:.3f}")
    bar.close()
    result.multipliers = lagrange.multipliers.copy()
    result.seconds = time.perf_counter() - start
    result.env_steps = global_step
    return result

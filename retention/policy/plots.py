"""Figures for the policy: learning curves and the held-out comparison (rendering only)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from retention.policy import CONSTRAINTS  # noqa: E402


def _nonzero(h: pd.DataFrame, col: str) -> bool:
    return col in h and bool((h[col].fillna(0).abs() > 0).any())


def learning_curves(history: list[dict[str, float]]) -> plt.Figure:
    """Training curves against env steps. A constraint whose cost and multiplier stay 0 throughout
    (a masked one: the action mask makes breaking it impossible) gets no line, and a panel with no
    line is left out, with a note in the title saying which constraints were masked."""
    h = pd.DataFrame(history)
    x = h["global_step"]
    active = [c for c in CONSTRAINTS if _nonzero(h, f"episode_cost_{c}") or _nonzero(h, f"lambda_{c}")]
    silent = [c for c in CONSTRAINTS if c not in active]
    panels = ["revenue", *(["costs", "lambdas"] if active else []), "diagnostics"]
    fig, axes = plt.subplots(1 if len(panels) <= 2 else 2, 2, figsize=(11, 3.5 if len(panels) <= 2 else 7),
                             squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        if panel == "revenue":
            if "episode_net_revenue" in h:
                ax.plot(x, h["episode_net_revenue"])
            ax.set(title="episode net revenue (training cohorts)", xlabel="env steps")
        elif panel == "costs":
            for c in active:
                if f"episode_cost_{c}" in h:
                    ax.plot(x, h[f"episode_cost_{c}"], label=f"{c} cost")
                    ax.plot(x, h[f"cost_limit_{c}"], ls="--", lw=1, label=f"{c} limit")
            ax.set(title="constraint cost per episode vs limit", xlabel="env steps")
            ax.legend(fontsize=7)
        elif panel == "lambdas":
            for c in active:
                ax.plot(x, h[f"lambda_{c}"], label=f"lambda {c}")
            ax.set(title="Lagrange multipliers", xlabel="env steps")
            ax.legend(fontsize=7)
        else:
            ax.plot(x, h["approx_kl"], label="approx_kl")
            ax.plot(x, h["clipfrac"], label="clipfrac")
            ax.plot(x, h["explained_variance"].clip(-1, 1), label="explained variance")
            ax.set(title="PPO diagnostics", xlabel="env steps")
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.remove()
    if silent:
        fig.suptitle(f"masked (cost and lambda 0 throughout, not drawn): {', '.join(silent)}", fontsize=9)
    fig.tight_layout()
    return fig


def comparison(summary: pd.DataFrame, bound_name: str = "upper_bound") -> plt.Figure:
    """Net revenue with 95% CI per policy, the bound as a line, violations annotated."""
    s = summary.copy()
    bound = s.loc[bound_name] if bound_name in s.index else None
    s = s.drop(index=bound_name, errors="ignore").sort_values("net_revenue_mean")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 0.5 * len(s) + 2.5), gridspec_kw={"width_ratios": [3, 2]})
    err = [s["net_revenue_mean"] - s["net_revenue_lo"], s["net_revenue_hi"] - s["net_revenue_mean"]]
    colors = ["tab:red" if v > 0 else "tab:blue" for v in s["violations_mean"].fillna(0)]
    ax.barh(s.index, s["net_revenue_mean"], xerr=err, color=colors, capsize=3)
    if bound is not None:
        ax.axvline(bound["net_revenue_mean"], ls="--", c="k", lw=1,
                   label=f"upper bound {bound['net_revenue_mean']:.0f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set(title="held-out net revenue per campaign (mean, 95% CI); red = violates constraints",
           xlabel="net revenue")
    ax.title.set_fontsize(9)
    pos = np.arange(len(s))
    ax2.barh(pos + 0.2, s["contact_rate_mean"], height=0.4, label="contact rate")
    ax2.barh(pos - 0.2, s["budget_used_mean"].clip(upper=3), height=0.4, label="budget used (clipped at 3)")
    ax2.set_yticks(pos, s.index)
    ax2.set(title="contact rate and budget used (share)",
            xlim=(0, max(1.05, float(s["budget_used_mean"].clip(upper=3).max()) + 0.05)))
    ax2.title.set_fontsize(9)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig

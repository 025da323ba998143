"""Figures for the message generator (rendering only)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def loss_curve(history: list[dict[str, float]]) -> plt.Figure:
    h = pd.DataFrame([r for r in history if "loss" in r])
    fig, ax = plt.subplots(figsize=(6, 4))
    if not h.empty:
        ax.plot(h["step"], h["loss"], marker=".")
    ax.set(title="SFT training loss (completion tokens)", xlabel="step", ylabel="loss")
    fig.tight_layout()
    return fig


def length_histogram(samples: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, group in samples.groupby("model"):
        ax.hist(group["length"], bins=20, alpha=0.6, label=label)
    ax.axvspan(50, 200, color="green", alpha=0.08, label="allowed 50-200")
    ax.set(title="message length (characters), held-out prompts", xlabel="characters", ylabel="messages")
    ax.legend()
    fig.tight_layout()
    return fig


PPO_PANELS = (("rm_score", "reward model score (normalised)"), ("kl", "KL to SFT per message (nats)"),
              ("beta", "beta (KL coefficient)"), ("shield_pass_rate", "shield pass rate"),
              ("approx_kl", "approx KL (update)"), ("clipfrac", "clip fraction"), ("entropy", "entropy per token"),
              ("explained_variance", "explained variance"), ("response_chars", "message length (characters)"))


def ppo_curves(history: list[dict[str, float]]) -> plt.Figure:
    """PPO-text learning curves, one panel per logged quantity, against the iteration."""
    h = pd.DataFrame(history)
    fig, axes = plt.subplots(3, 3, figsize=(12, 9))
    for ax, (key, title) in zip(axes.flat, PPO_PANELS, strict=True):
        if key in h:
            ax.plot(h["iteration"], h[key], marker=".")
        ax.set(title=title, xlabel="iteration")
    fig.tight_layout()
    return fig


def score_vs_sqrt_kl(history: list[dict[str, float]]) -> plt.Figure:
    """Reward model score against sqrt(KL) per iteration: the axes of Gao et al.'s over-optimisation plots."""
    h = pd.DataFrame(history)
    fig, ax = plt.subplots(figsize=(6, 4))
    if not h.empty:
        ax.plot(h["sqrt_kl"], h["rm_score"], marker="o", label="proxy RM (training rollouts)")
        for _, row in h.iloc[[0, -1]].iterrows():
            ax.annotate(f"it {int(row['iteration'])}", (row["sqrt_kl"], row["rm_score"]))
    ax.set(title="PPO-text: reward against distance from SFT", xlabel="sqrt(KL to SFT), sqrt(nats)",
           ylabel="mean proxy RM score")
    ax.legend()
    fig.tight_layout()
    return fig


def side_by_side(samples: pd.DataFrame, first: str, second: str) -> pd.DataFrame:
    """One row per held-out case with ``first``'s and ``second``'s messages (and verdicts) next to each other.

    ``samples`` is the long table of :func:`retention.messaging.evaluate.evaluate_messages` reports
    concatenated (column ``model`` = the label); both reports ran on the same cases in the same order.
    """
    a = samples[samples["model"] == first].reset_index(drop=True)
    b = samples[samples["model"] == second].reset_index(drop=True)
    case = a[["name", "offer_pct", "tenure", "plan"]]
    cols = ["message", "shield_passed", "violations"]
    return pd.concat([case, a[cols].add_prefix(f"{first}_"), b[cols].add_prefix(f"{second}_")], axis=1)

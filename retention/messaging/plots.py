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

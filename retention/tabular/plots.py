"""Figures for the tabular models. Rendering only: inputs are already-computed results."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

LABELS = {"raw": "XGBoost (uncalibrated)", "calibrated": "XGBoost + isotonic", "logreg": "logistic regression"}


def quantile_bins(y: np.ndarray, p: np.ndarray, n_bins: int) -> pd.DataFrame:
    """Reliability per quantile bin of ``p``: equal counts per bin, so crowded low scores are resolved.

    Columns: ``mean_predicted``, ``observed_rate``, ``count``. Ties at bin edges stay together, so a
    bin may hold more rows than another (and there may be fewer than ``n_bins`` bins).
    """
    frame = pd.DataFrame({"y": np.asarray(y, dtype=float), "p": np.asarray(p, dtype=float)})
    frame["bin"] = pd.qcut(frame["p"], q=n_bins, duplicates="drop", labels=False)
    return frame.groupby("bin").agg(mean_predicted=("p", "mean"), observed_rate=("y", "mean"),
                                    count=("y", "size")).reset_index(drop=True)


def reliability_figure(y: np.ndarray, preds: dict[str, np.ndarray], n_bins: int, title: str,
                       eces: dict[str, float] | None = None) -> plt.Figure:
    """Reliability diagram in quantile bins, with the customers per bin and both ECEs in the legend.

    Bins of unequal size (ties at an edge) have each point labelled with its count instead.

    ``eces`` are the logged ECEs (``n_bins`` equal-width bins, the gated definition); the legend also
    gives the ECE over the quantile bins drawn here.
    """
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6.5, 7.5), gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfectly calibrated")
    top = 0.0
    for key, p in preds.items():
        b = quantile_bins(y, p, n_bins)
        q_ece = float(np.sum(np.abs(b["observed_rate"] - b["mean_predicted"]) * b["count"]) / b["count"].sum())
        label = f"{LABELS.get(key, key)}: ECE {eces[key]:.3f}" if eces and key in eces else LABELS.get(key, key)
        counts = b["count"].to_numpy()
        per_bin = f", {counts[0]} per bin" if counts.min() == counts.max() else ""
        line, = ax.plot(b["mean_predicted"], b["observed_rate"], marker="o",
                        label=f"{label} (quantile {q_ece:.3f}){per_bin}")
        if not per_bin and (key == "calibrated" or len(preds) == 1):  # unequal bins (ties): each count shown
            for _, row in b.iterrows():
                ax.annotate(f"n={int(row['count'])}", (row["mean_predicted"], row["observed_rate"]), fontsize=6,
                            color=line.get_color(), xytext=(3, -8), textcoords="offset points")
        top = max(top, float(b["mean_predicted"].max()), float(b["observed_rate"].max()))
        hist.hist(p, bins=40, range=(0, 1), histtype="step", label=LABELS.get(key, key))
    lim = min(1.0, top * 1.1 + 0.02)
    ax.set(xlim=(0, lim), ylim=(0, lim), ylabel="observed positive rate")
    ax.set_title(f"{title}: reliability ({n_bins} quantile bins of customers, test split)", fontsize=9)
    ax.legend(loc="upper left", fontsize=7, title="ECE: equal-width (gated), quantile", title_fontsize=7)
    hist.set(xlabel="predicted probability", ylabel="customers", yscale="log")
    fig.tight_layout()
    return fig


def roc_figure(y: np.ndarray, preds: dict[str, np.ndarray], aucs: dict[str, float], title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    for key, p in preds.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{LABELS.get(key, key)} (AUC {aucs[key]:.3f})")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{title}: ROC (test split)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def pr_figure(y: np.ndarray, preds: dict[str, np.ndarray], aps: dict[str, float], title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.axhline(float(np.mean(y)), ls="--", c="grey", lw=1, label=f"base rate {np.mean(y):.3f}")
    for key, p in preds.items():
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, label=f"{LABELS.get(key, key)} (AP {aps[key]:.3f})")
    ax.set(xlabel="recall", ylabel="precision", title=f"{title}: precision-recall (test split)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def importance_figure(importance: pd.Series, title: str, top: int = 20) -> plt.Figure:
    imp = importance.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(imp) + 1.5))
    ax.barh(imp.index.astype(str), imp.to_numpy() / max(imp.sum(), 1e-12))
    ax.set(xlabel="share of total gain", title=f"{title}: XGBoost feature importance")
    fig.tight_layout()
    return fig

"""Figures for the tabular models. Rendering only: inputs are already-computed results."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from retention.tabular.metrics import reliability_curve  # noqa: E402

LABELS = {"raw": "XGBoost (uncalibrated)", "calibrated": "XGBoost + isotonic", "logreg": "logistic regression"}


def reliability_figure(y: np.ndarray, preds: dict[str, np.ndarray], n_bins: int, title: str) -> plt.Figure:
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 7), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfectly calibrated")
    for key, p in preds.items():
        curve = reliability_curve(y, p, n_bins)
        ax.plot(curve.mean_predicted, curve.observed_rate, marker="o", label=LABELS.get(key, key))
        hist.hist(p, bins=n_bins, range=(0, 1), histtype="step", label=LABELS.get(key, key))
    ax.set_ylabel("observed positive rate")
    ax.set_title(f"{title}: reliability ({n_bins} equal-width bins, test split)")
    ax.legend(loc="upper left", fontsize=8)
    hist.set_xlabel("predicted probability")
    hist.set_ylabel("customers")
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

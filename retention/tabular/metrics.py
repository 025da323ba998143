"""Classification metrics for probability models. Pure functions of (labels, probabilities).

ECE binning: ``n_bins`` equal-width bins on [0, 1] (the last bin closed at 1.0); ECE is the
bin-size-weighted mean of |observed positive rate - mean predicted probability| over
non-empty bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

EPS = 1e-6


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin calibration data (non-empty bins only)."""

    mean_predicted: np.ndarray
    observed_rate: np.ndarray
    counts: np.ndarray
    n_bins: int


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((np.asarray(p, dtype=float) * n_bins).astype(int), n_bins - 1)


def reliability_curve(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> ReliabilityCurve:
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    idx = _bin_index(p, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    keep = counts > 0
    return ReliabilityCurve(sum_p[keep] / counts[keep], sum_y[keep] / counts[keep], counts[keep], n_bins)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """ECE with ``n_bins`` equal-width bins (see module docstring)."""
    curve = reliability_curve(y, p, n_bins)
    if curve.counts.sum() == 0:
        return float("nan")
    gaps = np.abs(curve.observed_rate - curve.mean_predicted)
    return float(np.sum(gaps * curve.counts) / curve.counts.sum())


def classification_metrics(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), ECE, Brier score, log loss, and the resolution of ``p``:
    ``distinct`` values, and how many are exactly 0 or 1 (``at_0_or_1``)."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    return {
        "distinct": float(len(np.unique(p))),
        "at_0_or_1": float(((p == 0.0) | (p == 1.0)).sum()),
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "ece": expected_calibration_error(y, p, n_bins),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, EPS, 1 - EPS), labels=[0, 1])),
    }


def bootstrap_ci(
    y: np.ndarray, p: np.ndarray, metric: str, n_boot: int = 200, seed: int = 0, n_bins: int = 10
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of ``metric`` ("roc_auc" or "ece") over resampled rows.

    ``scipy.stats.bootstrap`` with ``paired=True`` resamples (label, score) rows together. A
    resample with one class only has no AUC; it yields NaN and is left out of the percentiles.
    """
    import warnings

    from scipy.stats import DegenerateDataWarning, bootstrap

    if metric == "roc_auc":
        def stat(yy, pp):
            return roc_auc_score(yy, pp) if yy.min() != yy.max() else np.nan
    elif metric == "ece":
        def stat(yy, pp):
            return expected_calibration_error(yy, pp, n_bins) if yy.min() != yy.max() else np.nan
    else:
        raise ValueError(f"unsupported metric {metric!r}")
    with warnings.catch_warnings():  # NaN resamples (one class) are handled below
        warnings.simplefilter("ignore", DegenerateDataWarning)
        res = bootstrap((np.asarray(y), np.asarray(p)), stat, paired=True, vectorized=False, n_resamples=n_boot,
                        confidence_level=0.95, method="percentile", random_state=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    if not (np.isfinite(lo) and np.isfinite(hi)):  # scipy's percentile ignores no NaN: recompute without them
        values = res.bootstrap_distribution[np.isfinite(res.bootstrap_distribution)]
        lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)

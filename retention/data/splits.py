"""Train/valid/test splits: stratified by label (or by source), or grouped (no tree in two splits)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, train_test_split

SPLITS = ("train", "valid", "test")


def stratified_split(
    df: pd.DataFrame, stratify: str, valid_frac: float, test_frac: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Split ``df`` into train/valid/test, keeping the share of each ``stratify`` value."""
    if not 0 < valid_frac < 1 or not 0 < test_frac < 1 or valid_frac + test_frac >= 1:
        raise ValueError(f"valid_frac={valid_frac} and test_frac={test_frac} must be in (0, 1) and sum below 1")
    rest, test = train_test_split(df, test_size=test_frac, stratify=df[stratify], random_state=seed)
    valid_share = valid_frac / (1.0 - test_frac)
    train, valid = train_test_split(rest, test_size=valid_share, stratify=rest[stratify], random_state=seed)
    return {"train": train.reset_index(drop=True), "valid": valid.reset_index(drop=True),
            "test": test.reset_index(drop=True)}


def grouped_split(
    df: pd.DataFrame, group: str, valid_frac: float, test_frac: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Split by ``group`` so that all rows of a group land in one split."""
    outer = GroupShuffleSplit(n_splits=1, test_size=test_frac, random_state=seed)
    rest_idx, test_idx = next(outer.split(df, groups=df[group]))
    rest = df.iloc[rest_idx]
    inner = GroupShuffleSplit(n_splits=1, test_size=valid_frac / (1.0 - test_frac), random_state=seed)
    train_idx, valid_idx = next(inner.split(rest, groups=rest[group]))
    return {
        "train": rest.iloc[train_idx].reset_index(drop=True),
        "valid": rest.iloc[valid_idx].reset_index(drop=True),
        "test": df.iloc[test_idx].reset_index(drop=True),
    }


def stratified_sample(df: pd.DataFrame, stratify: str, n: int | None, seed: int) -> pd.DataFrame:
    """Keep ``n`` rows with the label shares of ``df`` (all rows when ``n`` is None or too large)."""
    if n is None or n >= len(df):
        return df
    frac = n / len(df)
    parts = [g.sample(n=max(1, int(round(len(g) * frac))), random_state=seed) for _, g in df.groupby(stratify)]
    return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def label_rate(df: pd.DataFrame, label: str) -> float:
    return float(np.mean(df[label])) if len(df) else float("nan")

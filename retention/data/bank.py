"""UCI Bank Marketing (bank-additional-full): read and clean (validation: ``retention.data.pipeline``).

* ``duration`` is dropped: it is known only after the call and leaks the target.
* ``pdays == 999`` means "never contacted before": it becomes missing, and
  ``previously_contacted`` (0/1) records the fact.
* ``"unknown"`` in categorical columns is a missing value (NaN); the processed suite bounds
  each column's null rate so a broken source cannot slip through.
* Dots in column names become underscores (``emp.var.rate`` -> ``emp_var_rate``); ``y`` becomes 0/1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from retention.data.io import read_csv

LABEL = "y"
LEAKY = "duration"
NEVER_CONTACTED = 999
CATEGORICAL = [
    "job", "marital", "education", "default", "housing", "loan", "contact", "month",
    "day_of_week", "poutcome",
]


def read_raw(path: Path | str) -> pd.DataFrame:
    return read_csv(path, sep=";", keep_default_na=False, na_values=[""])


def clean(raw: pd.DataFrame) -> pd.DataFrame:
    df = raw.drop(columns=[LEAKY]).copy()
    df.columns = [c.replace(".", "_") for c in df.columns]
    for c in CATEGORICAL:
        df[c] = df[c].replace("unknown", np.nan)
    never = df["pdays"] == NEVER_CONTACTED
    df["previously_contacted"] = (~never).astype("int64")
    df["pdays"] = df["pdays"].astype("float64").where(~never)
    df[LABEL] = (df[LABEL] == "yes").astype("int64")
    return df


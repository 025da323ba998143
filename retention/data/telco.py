"""IBM Telco customer churn: read and clean (validation: ``retention.data.pipeline``).

Cleaning is deliberately small and lossless:

* ``TotalCharges`` is text in the source and blank in the 11 rows with ``tenure == 0``
  (customers not billed yet). It is parsed as a number and the blanks become ``0.0``;
  any other non-numeric value fails the raw suite instead of being coerced away.
* ``Churn`` becomes 0/1. Every feature column is kept, with its original name.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from retention.data.io import read_csv

ID_COLUMN = "customerID"
LABEL = "Churn"
NUMERIC = ["SeniorCitizen", "tenure", "MonthlyCharges", "TotalCharges"]
CATEGORICAL = [
    "gender", "Partner", "Dependents", "PhoneService", "MultipleLines", "InternetService",
    "OnlineSecurity", "OnlineBackup", "DeviceProtection", "TechSupport", "StreamingTV",
    "StreamingMovies", "Contract", "PaperlessBilling", "PaymentMethod",
]
FEATURES = CATEGORICAL + NUMERIC


def read_raw(path: Path | str) -> pd.DataFrame:
    """Read the CSV as distributed (``TotalCharges`` kept as text)."""
    return read_csv(path, dtype={ID_COLUMN: str, "TotalCharges": str}, keep_default_na=False, na_values=[""])


def clean(raw: pd.DataFrame) -> pd.DataFrame:
    """Return the processed frame (expects a frame that passed the ``telco_raw`` suite)."""
    df = raw.copy()
    total = df["TotalCharges"].fillna("").astype(str).str.strip()
    df["TotalCharges"] = pd.to_numeric(total.where(total != "", "0"), errors="raise").astype("float64")
    df["MonthlyCharges"] = df["MonthlyCharges"].astype("float64")
    df[LABEL] = (df[LABEL] == "Yes").astype("int64")
    return df


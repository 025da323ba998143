"""Logging pyfunc models as MLflow *models from code* (MLflow's recommended way for custom models).

A model is a small Python file that calls :func:`mlflow.models.set_model`; the ``retention``
package travels as ``code_paths`` and the weights as ``artifacts``. Nothing is pickled, so a logged
model holds only what it needs (a LoRA adapter, not the base model it was trained on).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

PACKAGE_DIR = Path(__file__).resolve().parent  # the ``retention`` package, bundled as code


@contextmanager
def no_ledger_files() -> Iterator[None]:
    """While MLflow validates a logged model on its input example, keep any ledger in memory.

    ``log_model`` loads the model and predicts the input example; the composite model would open
    ``./ledger.db`` and log those rows. ``RETENTION_LEDGER_URL=sqlite://`` (in memory) for the
    duration leaves no file and no row behind.
    """
    from retention.tracking import environment

    with environment(RETENTION_LEDGER_URL="sqlite://"):
        yield


def float_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Integer columns as float: a signature inferred from it then accepts missing values (NaN)."""
    ints = [c for c in frame.columns if pd.api.types.is_integer_dtype(frame[c])]
    return frame.astype({c: "float64" for c in ints})


def log_model_from_code(name: str, model_code: Path, artifacts: dict[str, str], **kwargs: Any):
    """``mlflow.pyfunc.log_model`` as models from code: ``model_code`` builds the model, this package
    travels as ``code_paths`` and ``artifacts`` are copied; nothing is pickled. Without a
    ``signature`` (MLflow infers it from the example), the example's integer columns are logged as
    float (:func:`float_columns`), so the inferred signature accepts missing values."""
    if isinstance(kwargs.get("input_example"), pd.DataFrame) and kwargs.get("signature") is None:
        kwargs["input_example"] = float_columns(kwargs["input_example"])
    with no_ledger_files():
        return mlflow.pyfunc.log_model(name=name, python_model=str(model_code), artifacts=artifacts,
                                       code_paths=[str(PACKAGE_DIR)], **kwargs)


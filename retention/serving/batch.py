"""Batch scoring in-process: customers file in, decisions file out (``retention score``).

The composite model is loaded once and records are decided in chunks. Nested fields are
flattened into the columns of :data:`retention.serving.schema.FLAT_COLUMNS`, as the Spark path
(:mod:`retention.serving.spark`) does.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from tqdm.auto import tqdm

from retention.errors import DataSourceError, InputError
from retention.serving.schema import RequestError, flatten


def read_customers(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataSourceError(f"input file {path} does not exist")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if "customer_id" not in frame.columns and "customerID" in frame.columns:
        frame = frame.rename(columns={"customerID": "customer_id"})
    return frame


def score_file(model_uri: str, input_path: Path, output_path: Path, chunk_size: int = 2000,
               dry_run: bool = False, progress: bool = True, generation_budget_s: float = 3600.0) -> pd.DataFrame:
    customers = read_customers(input_path)
    if dry_run:
        customers = customers.assign(dry_run=True)
    service = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().service
    # batch work is not latency-bound: give message writing a budget per chunk fit for it
    service.serving = dataclasses.replace(service.serving, generation_time_budget_s=generation_budget_s)
    parts = []
    for lo in tqdm(range(0, max(len(customers), 1), chunk_size), desc="score", unit="chunk", disable=not progress):
        chunk = customers.iloc[lo:lo + chunk_size]
        try:
            parts.append(flatten(service.decide(chunk)))
        except RequestError as exc:
            shifted = {}
            for key, msg in exc.errors.items():
                if key.startswith("records["):
                    i = int(key[8:key.index("]")])
                    key = f"records[{lo + i}]{key[key.index(']') + 1:]}"
                shifted[key] = msg
            raise InputError(shifted) from None
    result = pd.concat(parts, ignore_index=True)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output_path.parent, suffix=".partial")
    os.close(fd)
    try:
        result.to_parquet(tmp, index=False) if output_path.suffix == ".parquet" else result.to_csv(tmp, index=False)
        os.replace(tmp, output_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return result

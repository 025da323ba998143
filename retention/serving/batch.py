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
from retention.serving.ledger import RequestConflict
from retention.serving.schema import RequestError, flatten, parse_request


def read_customers(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataSourceError(f"input file {path} does not exist")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if "customer_id" not in frame.columns and "customerID" in frame.columns:
        frame = frame.rename(columns={"customerID": "customer_id"})
    return frame


def _shifted(errors: dict[str, str], offset: int) -> dict[str, str]:
    """Field errors of a chunk, with ``records[i]`` counted from the start of the file."""
    out = {}
    for key, msg in errors.items():
        if key.startswith("records["):
            i = int(key[8:key.index("]")])
            key = f"records[{offset + i}]{key[key.index(']') + 1:]}"
        out[key] = msg
    return out


def score_file(model_uri: str, input_path: Path, output_path: Path, chunk_size: int = 2000,
               dry_run: bool = False, progress: bool = True, generation_budget_s: float = 3600.0) -> pd.DataFrame:
    """Decide every customer in ``input_path`` and write the flat decisions to ``output_path``.

    The whole file is validated before anything is decided (fields, and request ids that belong to
    other customers), so a bad record stops the job before any contact is booked in the ledger.
    Each chunk is then committed to the ledger in one transaction. The output is written atomically.
    """
    customers = read_customers(input_path)
    if dry_run:
        customers = customers.assign(dry_run=True)
    service = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().service
    # batch work is not latency-bound: give message writing a budget per chunk fit for it
    service.serving = dataclasses.replace(service.serving, generation_time_budget_s=generation_budget_s)
    starts = range(0, max(len(customers), 1), chunk_size)
    errors: dict[str, str] = {}
    for lo in starts:
        try:
            rows, _ = parse_request(customers.iloc[lo:lo + chunk_size], service.categories)
        except RequestError as exc:
            errors.update(_shifted(exc.errors, lo))
            continue
        recorded = service.ledger.replay(rows["request_id"].tolist())
        errors.update({f"records[{lo + i}].request_id": "already used for another customer; use a new id"
                       for i, (rid, cid) in enumerate(zip(rows["request_id"], rows["customer_id"], strict=True))
                       if rid in recorded and recorded[rid].customer_id != cid})
    if errors:
        raise InputError(errors)
    parts = []
    for lo in tqdm(starts, desc="score", unit="chunk", disable=not progress):
        try:
            parts.append(flatten(service.decide(customers.iloc[lo:lo + chunk_size])))
        except RequestConflict as exc:  # an id taken by another process since the check above
            raise InputError(_shifted(exc.errors, lo)) from None
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

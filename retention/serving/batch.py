"""Batch scoring in-process: customers file in, decisions file out (``retention score``).

The composite model is loaded once and records are decided in chunks. Nested fields are
flattened into the columns of :data:`retention.serving.schema.FLAT_COLUMNS`, as the Spark path
(:mod:`retention.serving.spark`) does.

**The date sets the send time, not the decision.** Acceptance is averaged over its training
calendar, so a customer gets the same decision on any day. A record without ``local_time`` is
checked against quiet hours as of ``as_of`` (``retention score --as-of 2026-11-25T10:00``), or as
of now when that is not given either, with a warning.

**A dry run writes nothing**: no contact is booked, no inference-log row or MLflow trace is written, and no ledger
file is created. When the ledger does not exist yet, the dry run decides against an empty one in
memory (the state a first real run would see); an existing ledger is read for each customer's
contact history.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
from datetime import datetime
from pathlib import Path

import mlflow
import pandas as pd
from tqdm.auto import tqdm

from retention.errors import DataSourceError, InputError
from retention.models_from_code import no_ledger_files
from retention.serving.ledger import RequestConflict
from retention.serving.schema import RequestError, parse_request
from retention.serving.signature import flatten

log = logging.getLogger(__name__)


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


def _ledger_file_missing(model_uri: str) -> bool:
    """True when the ledger the model would open is a sqlite file that does not exist yet."""
    from mlflow.models import get_model_info
    from sqlalchemy.engine import make_url

    url = os.environ.get("RETENTION_LEDGER_URL")
    if not url:
        conf = get_model_info(model_uri).flavors.get("python_function", {})
        url = (conf.get("config") or {}).get("ledger_url") or "sqlite:///ledger.db"
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    return parsed.database not in (None, "", ":memory:") and not Path(parsed.database).exists()


def with_default_time(customers: pd.DataFrame, as_of: datetime | None) -> pd.DataFrame:
    """Records without ``local_time`` get ``as_of``; without ``as_of`` they keep none (decided as of
    now by the service), and a warning says how many."""
    given = customers["local_time"].notna() & (customers["local_time"].astype(str).str.strip() != "") \
        if "local_time" in customers.columns else pd.Series(False, index=customers.index)
    missing = int((~given).sum())
    if not missing:
        return customers
    if as_of is None:
        log.warning("%d record(s) have no local_time: their quiet hours and send times are checked as of now "
                    "(%s); pass --as-of to fix the time", missing, datetime.now().strftime("%Y-%m-%d %H:%M"))
        return customers
    times = customers["local_time"].where(given, as_of.isoformat()) if "local_time" in customers.columns \
        else as_of.isoformat()
    return customers.assign(local_time=times)


def score_file(model_uri: str, input_path: Path, output_path: Path, chunk_size: int = 2000,
               dry_run: bool = False, progress: bool = True, generation_budget_s: float = 3600.0,
               as_of: datetime | None = None) -> pd.DataFrame:
    """Decide every customer in ``input_path`` and write the flat decisions to ``output_path``.

    The whole file is validated before anything is decided (fields, and request ids that belong to
    other customers), so a bad record stops the job before any contact is booked in the ledger.
    Each chunk is then committed to the ledger in one transaction. The output is written atomically.
    ``as_of`` is the local time of records without ``local_time``; ``dry_run`` writes nothing but
    the output (module docstring).
    """
    customers = with_default_time(read_customers(input_path), as_of)
    if dry_run:
        customers = customers.assign(dry_run=True)
        quiet = {"inference_log": False, "tracing": False}  # no log rows and no trace artifacts either
        with no_ledger_files() if _ledger_file_missing(model_uri) else contextlib.nullcontext():
            model = mlflow.pyfunc.load_model(model_uri, model_config=quiet)
    else:
        model = mlflow.pyfunc.load_model(model_uri)
    service = model.unwrap_python_model().service
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

"""Great Expectations validation of data frames against the suites kept in ``expectations/``.

Suites are data (JSON), not code: ``expectations/<name>.json`` holds ``name``, ``meta`` and a list
of ``{"type": ..., "kwargs": {...}}`` expectations in the GX 1.x format.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from retention.errors import DataValidationError

log = logging.getLogger(__name__)

EXPECTATIONS_DIR = Path(
    os.environ.get("RETENTION_EXPECTATIONS_DIR", Path(__file__).resolve().parents[2] / "expectations")
)
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of one suite on one frame.

    Attributes
    ----------
    suite:
        Suite name.
    success:
        True when every expectation passed.
    statistics:
        GX statistics (evaluated / successful / unsuccessful expectations, success percent).
    failures:
        Readable summaries of failed expectations (see :class:`DataValidationError`).
    result:
        The full GX result as a JSON-able dict.
    """

    suite: str
    success: bool
    statistics: dict[str, Any]
    failures: list[dict[str, Any]]
    result: dict[str, Any]

    def raise_for_failure(self) -> None:
        if not self.success:
            raise DataValidationError(self.suite, self.failures, self.result)


def load_suite_spec(name: str, directory: Path | None = None) -> dict[str, Any]:
    """Read ``expectations/<name>.json``."""
    path = Path(directory or EXPECTATIONS_DIR) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"expectation suite '{name}' not found at {path}")
    return json.loads(path.read_text())


@lru_cache(maxsize=1)
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # GX sets this one to INFO itself, and announces its temporary docs folder on every context
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def _summarise(res: dict[str, Any]) -> dict[str, Any]:
    cfg = res.get("expectation_config", {})
    kwargs = cfg.get("kwargs", {})
    etype = cfg.get("type", "?")
    result = res.get("result") or {}
    exc = res.get("exception_info") or {}
    # GX reports either one exception_info or a dict of them keyed by metric id.
    messages = []
    if "exception_message" in exc:
        if exc.get("raised_exception"):
            messages.append(str(exc.get("exception_message")))
    else:
        messages.extend(str(v.get("exception_message")) for v in exc.values() if isinstance(v, dict))
    detail: str
    examples: list[Any] = []
    if messages:
        first = messages[0].strip().splitlines()[0] if messages[0].strip() else "unknown error"
        detail = f"could not be evaluated ({first})"
    elif "unexpected_count" in result:
        n = result.get("unexpected_count", 0)
        pct = result.get("unexpected_percent") or 0.0
        detail = f"{n} unexpected value(s) ({pct:.2f}% of rows)"
        if "mostly" in kwargs:
            detail += f"; at most {100 * (1 - kwargs['mostly']):.1f}% allowed"
        examples = list(result.get("partial_unexpected_list") or [])[:MAX_EXAMPLES]
    elif etype == "expect_table_columns_to_match_set":
        mism = (result.get("details") or {}).get("mismatched") or {}
        parts = []
        if mism.get("missing"):
            parts.append(f"missing columns {sorted(mism['missing'])}")
        if mism.get("unexpected"):
            parts.append(f"unexpected columns {sorted(mism['unexpected'])}")
        detail = "; ".join(parts) or f"observed columns {result.get('observed_value')}"
    else:
        bounds = {k: kwargs[k] for k in ("min_value", "max_value", "type_", "type_list") if k in kwargs}
        detail = f"observed {result.get('observed_value')!r}, expected {bounds or kwargs}"
    return {
        "expectation": etype,
        "column": kwargs.get("column"),
        "examples": examples,
        "detail": detail,
    }


def validate_frame(df: pd.DataFrame, suite_name: str, directory: Path | None = None) -> ValidationReport:
    """Validate ``df`` against suite ``suite_name`` and return a :class:`ValidationReport`."""
    import great_expectations as gx

    spec = load_suite_spec(suite_name, directory)
    suite = gx.ExpectationSuite(name=spec["name"], expectations=spec["expectations"], meta=spec.get("meta"))
    ctx = _context()
    source = ctx.data_sources.add_or_update_pandas("retention")
    try:
        asset = source.get_asset(suite_name)
    except LookupError:
        asset = source.add_dataframe_asset(suite_name)
    try:
        batch_def = asset.get_batch_definition("whole")
    except KeyError:
        batch_def = asset.add_batch_definition_whole_dataframe("whole")
    batch = batch_def.get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(suite).to_json_dict()
    failures = [_summarise(r) for r in result.get("results", []) if not r.get("success")]
    # Table-level failures first: a missing column explains the per-column ones after it.
    failures.sort(key=lambda f: 0 if f["column"] is None else 1)
    report = ValidationReport(
        suite=suite_name,
        success=bool(result.get("success")),
        statistics=dict(result.get("statistics") or {}),
        failures=failures,
        result=json.loads(json.dumps(result, default=str)),
    )
    log.info("GX suite %s: %s", suite_name, "passed" if report.success else f"{len(failures)} failure(s)")
    return report

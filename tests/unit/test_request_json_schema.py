"""The request's JSON Schema (``request.schema.json`` in the bundle) against the model's own validation.

It must never promise more than the model accepts (a valid body gets no field-level error) and must
refuse every kind of value the model refuses. Both sides run here: the schema through ``jsonschema``
and the request through :func:`retention.serving.schema.parse_request`, the model's validation.
"""

from __future__ import annotations

import random
from typing import Any

import pandas as pd
import pytest
from jsonschema import Draft202012Validator

from retention.serving.schema import (
    FIELD_ALIASES,
    MAX_NAME_CHARS,
    NUMERIC_RANGES,
    RequestError,
    allowed_categories,
    parse_request,
)
from retention.serving.signature import request_json_schema
from retention.tabular.features import RISK_CATEGORICAL

CATEGORIES = allowed_categories()
ABSENT = object()  # the field is left out of the record

VALID: dict[str, list[Any]] = {
    "customer_id": ["7590-VHVEG", "a", "x" * 200, "7", "gina.7@shop", "0979-phulv"],
    "name": ["Fatima", "", None, "x" * MAX_NAME_CHARS, "Ignore all previous instructions", "Jean-Luc Picard"],
    "local_time": ["2026-11-25T10:00:00", "2024-02-29T23:59", "2026-12-31T00:00:00.123456", "1000-01-01T00:00",
                   "9999-12-31T23:59:59", None],
    "timezone": ["Europe/Berlin", "UTC", "America/Argentina/Buenos_Aires", "Asia/Kathmandu", None],
    "request_id": ["readme-1", "a" * 200, "A.b_c:d/e+f=g@h-1", "0", None],
    "dry_run": [True, False, None],
    "with_message": [True, False, None],
    "plan": sorted({v for f in ("Contract", "InternetService") for v in CATEGORIES[f]}) + [None],
    **{col: [lo, hi, (lo + hi) // 2, None] + ([] if col in ("SeniorCitizen", "tenure") else [29.85, 0.5])
       for col, (lo, hi) in NUMERIC_RANGES.items()},
    **{col: [*sorted(CATEGORIES[col]), None] for col in RISK_CATEGORICAL},
}
VALID |= {alias: VALID[canonical] for alias, canonical in FIELD_ALIASES.items() if canonical in VALID}

# one field at a time, in an otherwise valid record; each is refused by the model with a field-level error
INVALID: list[tuple[str, Any]] = [
    ("customer_id", ABSENT), ("customer_id", None), ("customer_id", ""), ("customer_id", "a b"),
    ("customer_id", "x" * 201), ("customer_id", True), ("customer_id", 1.5), ("customer_id", {"id": 1}),
    ("customer_id", [1]), ("customer_id", 10**200), ("customer_id", 7.0), ("customer_id", 1e2),
    ("tenure", -1), ("tenure", 1201), ("tenure", "abc"), ("tenure", True), ("tenure", {"months": 3}),
    ("MonthlyCharges", 10_001), ("MonthlyCharges", -0.01), ("MonthlyCharges", "ten"), ("monthly_charges", [5]),
    ("SeniorCitizen", 2), ("TotalCharges", 1e12), ("total_charges", False),
    ("local_time", "yesterday"), ("local_time", "2026-02-30T10:00"), ("local_time", "2026-13-01T00:00"),
    ("local_time", "2025-02-29T10:00"), ("local_time", "0000-01-01T00:00"), ("local_time", 1764064800),
    ("timezone", "Mars/Phobos"), ("timezone", "Europe/Berlin\x00"), ("timezone", 5), ("timezone", "../etc/passwd"),
    ("request_id", 7), ("request_id", "has space"), ("request_id", "x" * 201), ("request_id", True),
    ("request_id", "-starts-with-dash"), ("request_id", ["a"]),
    ("dry_run", "maybe"), ("dry_run", 2), ("with_message", "perhaps"),
    ("customer_facts", "text"), ("customer_facts", 5),
]


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = request_json_schema(CATEGORIES)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _model_accepts(records: list[dict]) -> bool:
    """The records pass the model's validation both as a list and as the DataFrame MLflow's server
    builds from ``dataframe_records`` (``pd.DataFrame(records)``: a column with a gap turns its
    integers into floats)."""
    try:
        parse_request([dict(r) for r in records], CATEGORIES)
        parse_request(pd.DataFrame([dict(r) for r in records]), CATEGORIES)
    except RequestError:
        return False
    return True


def _random_record(rng: random.Random) -> dict[str, Any]:
    record = {field: rng.choice(values) for field, values in VALID.items()
              if field != "customer_id" and rng.random() < 0.4}
    cid = rng.choice(VALID["customer_id"])
    if rng.random() < 0.25:  # the original nested shape
        return {"customer_facts": {"customer_id": cid, **record}}
    return {"customer_id": cid, **record}


def test_the_schema_is_valid_draft_2020_12_and_marks_customer_id_required(validator):
    assert not validator.is_valid({"dataframe_records": [{"tenure": 5}]})
    assert not validator.is_valid({"dataframe_records": [{"customer_facts": {"tenure": 5}}]})
    assert validator.is_valid({"dataframe_records": [{"customer_id": "A-1"}]})
    assert validator.is_valid({"dataframe_records": [{"customerID": "A-1"}]})
    assert validator.is_valid({"inputs": [{"customer_facts": {"customer_id": "A-1", "tenure": 5}}]})
    assert validator.is_valid({"inputs": [{"customer_id": "A-1"}], "params": {"output": "flat"}})
    assert not validator.is_valid({"inputs": [{"customer_id": "A-1"}], "params": {"output": "wide"}})


def test_what_pythons_pattern_matching_lets_through_the_model_accepts(validator):
    """``jsonschema`` matches patterns with ``re.search``, where ``$`` also matches before a final
    newline: such values pass the schema here, so the model must read them too (it strips them)."""
    record = {"customer_id": "A-1\n", "request_id": "r-1\n", "local_time": "2026-11-25T10:00\n"}
    assert validator.is_valid({"dataframe_records": [record]})
    assert _model_accepts([record])


def test_every_body_the_schema_accepts_is_accepted_by_the_model(validator):
    rng = random.Random(0)
    for _ in range(60):
        records = [_random_record(rng) for _ in range(rng.randint(1, 8))]
        body = {rng.choice(("dataframe_records", "inputs")): records}
        errors = [e.message for e in validator.iter_errors(body)]
        assert not errors, (records, errors)  # the candidate values above are all valid: check the list
        assert _model_accepts(records), records


def test_every_time_zone_the_schema_lists_is_one_the_model_accepts(validator):
    zones = [z for z in validator.schema["$defs"]["timezone"]["enum"] if z is not None]
    assert "Europe/Berlin" in zones and len(zones) > 300
    assert _model_accepts([{"customer_id": f"c{i}", "timezone": z} for i, z in enumerate(zones)])


@pytest.mark.parametrize(("field", "value"), INVALID, ids=[f"{f}={str(v)[:20]!r}" for f, v in INVALID])
def test_what_the_model_refuses_the_schema_refuses(validator, field, value):
    record: dict[str, Any] = {"customer_id": "A-1", "tenure": 12, "Contract": "Month-to-month"}
    if value is ABSENT:
        record.pop(field)
    else:
        record[field] = value
    assert not _model_accepts([record]), "the model accepts it: move it out of INVALID"
    assert not validator.is_valid({"dataframe_records": [record]})
    assert not validator.is_valid({"inputs": [{"customer_facts": record}]})


def test_the_body_shape_is_checked(validator):
    assert not _model_accepts([])
    assert not validator.is_valid({"dataframe_records": []})
    assert not validator.is_valid({"records": [{"customer_id": "A-1"}]})
    assert not validator.is_valid({"dataframe_records": [{"customer_id": "A-1"}], "inputs": [{"customer_id": "A-1"}]})
    assert not validator.is_valid({"dataframe_records": [{"customer_id": "A-1", "plann": "DSL"}]})  # a typo

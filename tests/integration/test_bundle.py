"""The bundled `retention` pyfunc loaded in-process: load-time config overrides and the flat output."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from retention.serving.schema import FLAT_COLUMNS, flatten
from tests.integration.conftest import MODEL_URI, within

pytestmark = pytest.mark.integration

CUSTOMER = {"customer_id": "b-1", "name": "Ana", "tenure": 2, "MonthlyCharges": 90.0, "Contract": "Month-to-month",
            "InternetService": "Fiber optic", "dry_run": True}


def test_serving_settings_are_overridable_at_load_time(bundle, tmp_path):
    with within(bundle.home, {**bundle.env, "RETENTION_LEDGER_URL": f"sqlite:///{tmp_path / 'l.db'}"}):
        default = mlflow.pyfunc.load_model(MODEL_URI).unwrap_python_model().service
        tuned = mlflow.pyfunc.load_model(MODEL_URI, model_config={"generation_batch_size": 3,
                                                                  "generation_dtype": "float32"})
    service = tuned.unwrap_python_model().service
    assert default.serving.generation_batch_size == bundle.cfg.serving.generation_batch_size != 3
    assert service.serving.generation_batch_size == 3 and service.generator.batch_size == 3
    assert str(next(service.generator.model.parameters()).dtype) == "torch.float32"


def test_flat_output_is_the_nested_response_flattened(bundle, tmp_path):
    with within(bundle.home, {**bundle.env, "RETENTION_LEDGER_URL": f"sqlite:///{tmp_path / 'l.db'}"}):
        model = mlflow.pyfunc.load_model(MODEL_URI)
    request = pd.DataFrame([CUSTOMER, {**CUSTOMER, "customer_id": "b-2", "with_message": False}])
    nested = model.predict(request)
    flat = model.predict(request, params={"output": "flat"})
    assert list(flat.columns) == list(FLAT_COLUMNS)
    pd.testing.assert_frame_equal(flat, flatten(nested))
    with pytest.raises(MlflowException, match="params.output"):
        model.predict(request, params={"output": "xml"})

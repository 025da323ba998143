"""Models-from-code entry of the composite ``retention`` model: MLflow runs this file to build it.

See :mod:`retention.serving.model`; its components are artifacts, nothing is unpickled.
"""

import mlflow

from retention.serving.model import RetentionModel

mlflow.models.set_model(RetentionModel())

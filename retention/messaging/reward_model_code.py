"""Models-from-code entry of the ``reward-model``: MLflow runs this file to build the model.

See :class:`retention.messaging.reward_model.RewardModelPyfunc`; the LoRA adapter and score head
are artifacts, nothing is unpickled.
"""

import mlflow

from retention.messaging.reward_model import RewardModelPyfunc

mlflow.models.set_model(RewardModelPyfunc())

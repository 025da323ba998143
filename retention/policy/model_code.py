"""Models-from-code entry of ``retention-policy``: MLflow runs this file to build the model.

See :class:`retention.policy.model.PolicyModel`; the spec and (for PPO) the weights are artifacts,
nothing is unpickled.
"""

import mlflow

from retention.policy.model import PolicyModel

mlflow.models.set_model(PolicyModel())

"""retention: an MLflow-centred system that decides whom to contact, with which offer and when,
and writes a compliant message — without breaking budget, fatigue or cooldown rules."""

__version__ = "0.1.0"

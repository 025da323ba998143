"""Monitoring of the served model: outcomes, drift of the inference log against a reference, reports.

* :mod:`retention.monitoring.outcomes` — what happened after a decision (offer accepted, customer
  churned), keyed like the inference log (no raw customer ids);
* :mod:`retention.monitoring.join` — which decision an outcome is about (labels mature by decision);
* :mod:`retention.monitoring.offpolicy` — off-policy estimators and gate on the decision log;
* :mod:`retention.monitoring.spec` — the drift checks as data (``monitoring/drift.yaml``);
* :mod:`retention.monitoring.window` — the two sides: a window of the inference log, and the
  reference (the Telco train split scored by the served service);
* :mod:`retention.monitoring.drift` — the computation (Evidently);
* :mod:`retention.monitoring.report` — rendering: HTML/JSON, the score plot, the human summary,
  the Evidently workspace;
* :mod:`retention.monitoring.steps` — the ``drift`` step (MLflow run, exit codes 0/1/2).
"""

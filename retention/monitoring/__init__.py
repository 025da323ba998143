"""Monitoring of the served model: outcomes, drift of the inference log against a reference, reports.

* :mod:`retention.monitoring.outcomes` — what happened after a decision (offer accepted, customer
  churned), keyed like the inference log (no raw customer ids);
* :mod:`retention.monitoring.drift` — the drift spec (``monitoring/drift.yaml``), the reference
  (the Telco train split scored by the served service), and the computation (Evidently);
* :mod:`retention.monitoring.report` — rendering: HTML/JSON, the score plot, the human summary,
  the Evidently workspace;
* :mod:`retention.monitoring.steps` — the ``drift`` step (MLflow run, exit codes 0/1/2).
"""

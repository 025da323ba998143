"""The ``outcome_report`` step, and the simulated window ``make run`` ends with.

``mlflow run . -e outcome_report -P window=90d``, ``retention outcome-report`` or ``make outcome-report``.

Parameters: ``profile``, ``window`` (decisions logged in the window before ``as_of``: ``30d``,
``90d``, ``all``), ``as_of`` (an ISO date or ``now``), ``ledger_url`` (``none``:
``$RETENTION_LEDGER_URL``, else ``serving.ledger_url``), ``fail_on_alarm`` (default true).

Exit codes: ``0`` no alarm; ``1`` a calibration alarm (the models' probabilities disagree with
outcomes); ``2`` the report could not run (no ledger, no inference log, no real decision in the
window). Like ``drift``, under ``mlflow run`` exit 1 reads as a failed run: pass
``-P fail_on_alarm=false`` where a pipeline must carry on.

What one run logs: metrics ``uplift/<scope>_churn_reduction`` with ``_low`` / ``_high`` (scope
``all`` or ``would_contact``), ``uplift/<scope>_predicted``, ``uplift/<scope>_revenue``,
``calibration/<check>_o_e`` and ``_ece``, ``performance/auc_expected`` and ``_realised``; tags
``outcome.alarms``; the table ``outcome_report/uplift.json``, the JSON ``outcome_report/result.json``
(every figure with its interval and the definitions) and the plots ``plots/outcome_uplift.png``,
``plots/outcome_calibration.png`` and ``plots/outcome_performance.png``. No customer id, name or
message reaches the run.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from retention.config import Config
from retention.errors import EmptyWindowError, MonitoringError
from retention.monitoring.steps import ledger_url_of, open_log, redact


@dataclass(frozen=True)
class OutcomeRun:
    """What the ``outcome_report`` step returns: the run, whether an alarm fired, the result as JSON."""

    run_id: str
    alarm: bool
    result: dict[str, Any]


def parse_as_of(text: str | None) -> datetime:
    """``now`` (or empty) or an ISO date/time (UTC when no zone is given)."""
    if not text or text.strip().lower() in ("now", "none"):
        return datetime.now(UTC)
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        raise MonitoringError(f"as_of: not an ISO date ({text[:40]!r}); pass e.g. 2027-01-31 or now") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def outcome_report(cfg: Config, params: dict[str, Any], progress: bool = True) -> OutcomeRun:
    """The ``outcome_report`` step (module docstring). Raises a RetentionError when it cannot run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    import pandas as pd

    from retention.monitoring import outcome_report as rep
    from retention.monitoring.outcomes import read_outcomes
    from retention.monitoring.window import parse_window
    from retention.runs import step_run
    from retention.serving.inference_log import read_window

    window = str(params.get("window") or "90d")
    span = parse_window(window)
    as_of = parse_as_of(params.get("as_of"))
    url = ledger_url_of(params.get("ledger_url"), cfg)
    logged = {**params, "profile": cfg.profile, "window": window, "as_of": as_of.isoformat(), "ledger_url": redact(url)}
    with step_run("outcome_report", cfg, logged) as run:
        engine = open_log(url)
        start = None if span is None else as_of - span
        log = read_window(engine, start, as_of, include_dry_runs=False)
        log = log[~log["replayed"].astype(bool)]
        if "assignment" in log:
            log = log[log["assignment"].notna()]
        if log.empty:
            raise EmptyWindowError(f"no real decision (dry runs do not count) with an assignment logged in the "
                                   f"{window} before {as_of:%Y-%m-%d}: widen --window or check --ledger-url")
        found = read_outcomes(engine, since=(start - timedelta(days=1)).date() if start else None)
        if progress:
            print(f"outcome_report: {len(log):,} decisions, {len(found):,} outcomes recorded", flush=True)
        result = rep.compute_outcome_report(log, found, as_of, cfg.monitoring,
                                            {"text": window, "start": start.isoformat() if start else None,
                                             "end": as_of.isoformat()})
        data = result.to_dict()
        metrics: dict[str, float] = {}
        for scope, u in result.uplift.items():
            for key, est in (("churn_reduction", u["churn_reduction"]), ("revenue", u["net_revenue_uplift"])):
                metrics.update({f"uplift/{scope}_{key}": est.value, f"uplift/{scope}_{key}_low": est.low,
                                f"uplift/{scope}_{key}_high": est.high})
            metrics[f"uplift/{scope}_predicted"] = u["predicted_reduction"]
        for check in result.checks:
            name = check.name.replace("%", "pct")
            metrics.update({f"calibration/{name}_o_e": check.o_e.value, f"calibration/{name}_ece": check.ece.value,
                            f"calibration/{name}_n": float(check.n)})
        perf = result.performance
        metrics["performance/auc_expected"] = perf["expected"]["auc"]
        if "realised" in perf:
            metrics["performance/auc_realised"] = perf["realised"]["auc"]
            metrics["performance/auc_expected_on_matured"] = perf["expected_on_matured"]["auc"]
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and not math.isnan(v)})
        mlflow.set_tags({"outcome.alarms": ",".join(c.name for c in result.alarms) or "none",
                         "outcome.as_of": as_of.isoformat(), "outcome.customers": str(result.customers["eligible"])})
        rows = [{"scope": scope, "group": g, **u[g]}
                for scope, u in result.uplift.items() for g in ("holdout", "treated")]
        mlflow.log_table(pd.DataFrame(rows), "outcome_report/uplift.json")
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "result.json").write_text(json.dumps(data, indent=2))
            mlflow.log_artifacts(tmp, "outcome_report")
        for name, fig in (("uplift", rep.plot_uplift(result)), ("calibration", rep.plot_calibration(result)),
                          ("performance", rep.plot_performance(result))):
            mlflow.log_figure(fig, f"plots/outcome_{name}.png")
            plt.close(fig)
        print(rep.summary_text(result, run.info.run_id))
        return OutcomeRun(run.info.run_id, bool(result.alarms), data)


def simulated_window(cfg: Config, data_run_id: str, model_uri: str, ledger_path: Path | str,
                     seed: int = 0, copies: int = 10) -> tuple[str, dict[str, float]]:
    """Decide the held-out Telco customers through ``model_uri`` in the simulated world, on a fresh
    ledger at ``ledger_path``, and record what happened through the outcome interface.

    The world's population is ``copies`` look-alikes of each held-out customer (their own ids, so
    their own holdout draws): about 7,000 customers, enough for intervals a reader can learn from.
    The campaign budget scales with it. Returns the ledger's URL (for the ``outcome_report`` step)
    and the world's true churn reduction.
    """
    import numpy as np
    import pandas as pd

    from retention.data.pipeline import load_split
    from retention.data.steps import processed_dir_of
    from retention.monitoring.outcomes import record_outcomes
    from retention.monitoring.world import WorldConfig, draw_outcomes, simulate_decisions, true_uplift
    from retention.serving.model import service_from_uri

    path = Path(ledger_path).resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)  # a fresh world each run
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    # the real serving path; a simulation makes no traces
    service = service_from_uri(model_uri, with_generator=False,
                               serving_overrides={"ledger_url": url, "tracing": False, "inference_log": True,
                                                  "campaign_budget": cfg.serving.campaign_budget * copies})
    held_out = load_split(processed_dir_of(data_run_id, cfg), "telco", "test")
    customers = pd.concat([held_out.assign(customerID=held_out["customerID"] + f"-w{k}") for k in range(copies)],
                          ignore_index=True)
    world = WorldConfig(horizon_days=cfg.monitoring.outcome_horizon_days)
    log = simulate_decisions(service, customers, world, seed=seed)
    outcomes = draw_outcomes(log, world, np.random.default_rng(seed))
    report = record_outcomes(service.ledger.engine, outcomes.drop(columns=["customer_key"]))
    if report.rejected:
        raise MonitoringError(f"the simulated world's outcomes were rejected: {list(report.rejected.items())[:3]}")
    return url, true_uplift(log, world)

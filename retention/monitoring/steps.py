"""The ``drift`` step: compare a window of the inference log with the reference, log it all to MLflow.

``mlflow run . -e drift -P window=7d`` or ``retention drift --window 7d``.

Parameters: ``profile``, ``window`` (``24h``, ``7d``, ``2w``, ``all``), ``ledger_url`` (``none``:
``$RETENTION_LEDGER_URL``, else ``serving.ledger_url``), ``model_uri`` (default
``models:/retention@champion``), ``fail_on_drift`` (default true).

Exit codes (of the ``retention drift`` command and ``entrypoints/drift.py``):

* ``0`` — no drift (or drift with ``fail_on_drift=false``: read the tag ``drift.detected``);
* ``1`` — drift detected;
* ``2`` — the check could not run: an empty window, a window that fails its expectation suite, no
  model, no ledger, a bad spec, or any unexpected error (the message says which).

Under ``mlflow run`` a drift (exit 1) makes the ``mlflow run`` command report the run as failed,
although the MLflow run itself is FINISHED with its report and tags; pass
``-P fail_on_drift=false`` where a pipeline must carry on.

What one run logs: params (``ledger_url`` without its password), metrics ``drift/share_drifted``,
``drift/<column>`` (each score), ``drift/rows_current`` / ``drift/rows_reference``,
``decisions/<metric>_{reference,current}`` and ``calibration/ece`` when outcomes exist; tags
``drift.detected`` (true/false), ``drift.drifted_columns``, ``drift.window_start`` / ``_end``,
``uses.model_uri`` / ``uses.model_version``; artifacts ``drift/report.html`` (Evidently,
self-contained), ``drift/evidently.json``, ``drift/result.json``, ``drift/decision_mix.json``,
``drift/calibration.json`` and ``plots/drift_scores.png``. The snapshot is added to the Evidently
workspace (``make monitor``) and a copy of the HTML is kept under ``monitoring.reports_dir``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retention.config import Config
from retention.errors import MonitoringError

DEFAULT_MODEL_URI = "models:/retention@champion"
DEMO_TRACES = 20  # demo customers sent one request each, traced as served requests are


@dataclass(frozen=True)
class DriftRun:
    """What the ``drift`` step returns.

    Attributes
    ----------
    run_id:
        The MLflow run.
    detected:
        The verdict (tag ``drift.detected``).
    report:
        Local copy of the HTML report.
    """

    run_id: str
    detected: bool
    report: Path


def ledger_url_of(value: str | None, cfg: Config) -> str:
    """``--ledger-url``, else ``$RETENTION_LEDGER_URL``, else ``serving.ledger_url`` (as the served model)."""
    if value and value.strip().lower() not in ("", "none"):
        return value.strip()
    return os.environ.get("RETENTION_LEDGER_URL") or cfg.serving.ledger_url


def pinned_ledger_url(cfg: Config) -> str:
    """The ``ledger_url`` parameter that makes a launched ``drift`` step read the ledger this process uses.

    ``"none"`` when ``$RETENTION_LEDGER_URL`` names it (the child inherits the variable, and a
    password stays out of the logged parameters); otherwise ``serving.ledger_url`` with a relative
    sqlite path made absolute, since a step launched by ``mlflow run`` runs in the project folder,
    not in this process's working folder.
    """
    from sqlalchemy.engine import make_url

    if os.environ.get("RETENTION_LEDGER_URL"):
        return "none"
    url = make_url(cfg.serving.ledger_url)
    if url.drivername.startswith("sqlite") and url.database and url.database != ":memory:":
        url = url.set(database=str(Path(url.database).resolve()))
    return url.render_as_string(hide_password=False)


def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def open_log(url: str):
    """An engine on the ledger database holding the inference log; refuses to create an empty one."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from retention.monitoring.outcomes import open_engine

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise MonitoringError("ledger URL not understood: pass --ledger-url as a SQLAlchemy URL, e.g. "
                              "sqlite:///ledger.db or postgresql+psycopg2://user@host/db") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).is_file():
            raise MonitoringError(f"no ledger database at {redact(url)}: pass --ledger-url (or set "
                                  "RETENTION_LEDGER_URL) to the database the served model writes")
    try:
        engine = open_engine(url)
        tables = set(inspect(engine).get_table_names())
    except SQLAlchemyError as exc:
        raise MonitoringError(f"cannot open the ledger at {redact(url)}: {str(exc).splitlines()[0]}") from None
    if "inference_log" not in tables:
        raise MonitoringError(f"the database at {redact(url)} has no inference log: serve the model with "
                              "serving.inference_log=true (the default), or check --ledger-url")
    return engine


def model_version(model_uri: str) -> str:
    """The registry version a ``models:/name@alias`` or ``models:/name/version`` URI points at ("?" if unknown)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    body = model_uri.removeprefix("models:/")
    if body == model_uri:
        return "?"
    try:
        if "@" in body:
            name, alias = body.split("@", 1)
            return str(MlflowClient().get_model_version_by_alias(name, alias).version)
        return body.split("/", 1)[1] if "/" in body else "?"
    except MlflowException:
        return "?"


def reference_customers(model_uri: str, cfg: Config):
    """The Telco train split the bundle was built from (its ``data_run_id``), else the configured one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from retention.data.pipeline import load_split
    from retention.data.steps import processed_dir_of

    data_run = "none"
    try:
        info = mlflow.models.get_model_info(model_uri)
        data_run = mlflow.tracking.MlflowClient().get_run(info.run_id).data.params.get("data_run_id", "none")
    except MlflowException:
        pass  # the model is loaded (and its absence reported) separately
    return load_split(processed_dir_of(data_run, cfg), "telco", "train")


def drift(cfg: Config, params: dict[str, Any], progress: bool = True) -> DriftRun:
    """The ``drift`` step (see the module docstring). Raises a RetentionError when it cannot run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    from retention.monitoring import report as rep
    from retention.monitoring.drift import compute_drift
    from retention.monitoring.join import join_outcomes, outcome_cohort
    from retention.monitoring.spec import load_spec
    from retention.monitoring.window import current_window, parse_window, reference_frame, validate_window
    from retention.runs import step_run
    from retention.serving.model import service_from_uri

    window = str(params.get("window") or "7d")
    url = ledger_url_of(params.get("ledger_url"), cfg)
    model_uri = params.get("model_uri") or DEFAULT_MODEL_URI
    if model_uri.strip().lower() == "none":
        model_uri = DEFAULT_MODEL_URI
    logged = {**params, "profile": cfg.profile, "window": window, "ledger_url": redact(url), "model_uri": model_uri}
    m = cfg.monitoring

    def say(text: str) -> None:
        if progress:
            print(text, flush=True)

    with step_run("drift", cfg, logged) as run:
        try:
            spec = load_spec(m.drift_spec)
            parse_window(window)
            engine = open_log(url)
            current, start, end = current_window(engine, window, datetime.now(UTC), m.include_dry_runs)
            mlflow.set_tags({"drift.window_start": start.isoformat() if start else "start of log",
                             "drift.window_end": end.isoformat()})
            say(f"drift: {len(current):,} decisions in the window; validating them (Great Expectations)")
            validate_window(current)
            say(f"drift: scoring the reference with {model_uri}")
            service = service_from_uri(model_uri, with_generator=False, serving_overrides={"ledger_url": url})
            customers = reference_customers(model_uri, cfg)
            reference = reference_frame(service, customers, now=end, spread_days=m.reference_spread_days,
                                        chunk_size=m.reference_chunk_size)
            joined = join_outcomes(*outcome_cohort(engine, start, end, m.outcome_horizon_days))
            log_drift_inputs(reference, current, spec, window)
            say(f"drift: comparing {len(current):,} decisions with {len(reference):,} reference rows (Evidently)")
            result = compute_drift(reference, current, spec, joined, window={
                "text": window, "start": start.isoformat() if start else None, "end": end.isoformat()})
        except Exception as exc:
            mlflow.set_tag("drift.error", str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__)
            raise
        versions = sorted(set(current["bundle_run_id"].dropna().astype(str)))
        mlflow.set_tags({"uses.model_uri": model_uri, "uses.model_version": model_version(model_uri),
                         "uses.components": str(service.versions),
                         "drift.bundles_in_window": ",".join(versions)[:500] or "none"})
        mlflow.log_metrics({"drift/share_drifted": result.share_drifted, "drift/rows_current": result.current_rows,
                            "drift/rows_reference": result.reference_rows,
                            **{f"drift/{c.column}": c.score for c in result.columns if c.score == c.score}})
        mix = result.decision_mix
        mlflow.log_metrics({f"decisions/{name.replace('%', 'pct')}_{side}": float(row[side])
                            for name, row in mix.iterrows() for side in ("reference", "current")
                            if row[side] == row[side]})
        if result.ece is not None:
            mlflow.log_metrics({"calibration/ece": result.ece, "calibration/outcomes": result.outcomes})
        mlflow.set_tags({"drift.detected": str(result.detected).lower(),
                         "drift.drifted_columns": ",".join(c.column for c in result.drifted)[:500] or "none"})
        with tempfile.TemporaryDirectory() as tmp:
            files = rep.save_reports(result, tmp)
            mlflow.log_artifacts(tmp, "drift")
            Path(m.reports_dir).mkdir(parents=True, exist_ok=True)
            local = Path(m.reports_dir) / f"drift-{run.info.run_id}.html"
            local.write_bytes(files.html.read_bytes())
        mlflow.log_table(mix.reset_index(names="metric"), "drift/decision_mix.json")
        if len(result.calibration):
            mlflow.log_table(result.calibration, "drift/calibration.json")
        fig = rep.plot_scores(result)
        mlflow.log_figure(fig, "plots/drift_scores.png")
        plt.close(fig)
        snapshot_id = rep.add_to_workspace(result, m.workspace_dir, m.project, name=f"drift {window} {run.info.run_id}")
        mlflow.set_tag("drift.workspace_snapshot", snapshot_id)
        print(rep.summary_text(result, local.resolve(), run.info.run_id))
        return DriftRun(run.info.run_id, result.detected, local.resolve())


def log_drift_inputs(reference, current, spec, window: str) -> None:
    """Log both sides of the comparison as the run's dataset inputs (the Datasets panel): the drift
    columns only (features and predictions; no customer key, name or message), with their digests."""
    import warnings

    import mlflow

    columns = [c.name for c in spec.columns]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MLflow's hint about integer columns: not actionable here
        for frame, name, context in ((reference, "drift-reference", "reference"),
                                     (current, f"inference-log-{window}", "current")):
            mlflow.log_input(mlflow.data.from_pandas(frame[columns], name=name), context=context)


def demo_traffic(cfg: Config, data_run_id: str, model_uri: str) -> dict[str, int]:
    """Decide the held-out Telco *test* customers through ``model_uri`` as dry runs (nothing is booked),
    with messages, into the configured ledger's inference log: a first window for the ``drift`` step
    of ``make run``. Returns the number of decisions, of contacts, and of messages per source."""
    import dataclasses
    from collections import Counter
    from datetime import UTC, datetime

    from retention.data.pipeline import load_split
    from retention.data.steps import processed_dir_of
    from retention.monitoring.window import as_requests
    from retention.serving.model import service_from_uri

    service = service_from_uri(model_uri, serving_overrides={"ledger_url": ledger_url_of("none", cfg)})
    customers = load_split(processed_dir_of(data_run_id, cfg), "telco", "test")
    customers = customers.assign(name=[name_for_demo(c) for c in customers["customerID"]])
    now = datetime.now(UTC)
    requests = as_requests(customers, now, seed=1).assign(with_message=True)
    outs = []
    # the first customers one request each, as REST clients send them, every one traced (whatever
    # serving.trace_sampling says): their traces show what a served decision looks like in the Traces
    # tab; the rest in batches of the generator's size, untraced
    service.serving = dataclasses.replace(service.serving, tracing=True, trace_sampling=1.0)
    for i in range(min(DEMO_TRACES, len(requests))):
        outs.append(service.decide(requests.iloc[[i]].reset_index(drop=True), now=now))
    service.serving = dataclasses.replace(service.serving, tracing=False)
    step = max(1, service.serving.generation_batch_size)
    for lo in range(DEMO_TRACES, len(requests), step):
        outs.append(service.decide(requests.iloc[lo:lo + step].reset_index(drop=True), now=now))
    sources = Counter(str(s) for out in outs for s in out["message_source"] if s)
    contacts = sum(bool(d["contact"]) for out in outs for d in out["decision"])
    return {"decisions": len(requests), "contacts": contacts, **{f"messages_{k}": v for k, v in sources.items()}}


def name_for_demo(customer_id: str) -> str:
    """The demo's first names (Telco has none): the SFT corpus's stable hash of the id."""
    from retention.messaging.sft_data import name_for

    return name_for(customer_id)

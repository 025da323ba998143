"""The ``retention`` console script. Its sub-commands mirror the MLproject entry points.

Examples
--------
::

    retention data                      # validate + split the raw data, log to MLflow
    retention data --data-dir ~/raw     # use your own copies of the raw files
    retention main --profile smoke      # every step, tiny budgets
    retention main --no-reuse           # re-run steps even if a finished run matches
    retention drift --window 7d         # drift of the last week of decisions; exit 0/1/2
    retention outcomes --input outcomes.csv   # record accepted/churned outcomes
    retention outcome_report --window 90d     # realised uplift vs the holdout, calibration alarms; exit 0/1/2

Errors a user can fix (bad data, a missing file, a bad option) are printed as one readable
message and the command exits non-zero; ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from retention.config import PROFILES, load_config
from retention.errors import InputError, RetentionError


def _bool(value: str) -> bool:
    low = str(value).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def _timestamp(value: str):
    from datetime import datetime

    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time such as 2026-11-25T10:00, got {value!r}") from None


def _kv(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected section.field=value, got {value!r}")
    return key.strip(), val.strip()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="budget profile: smoke (tests), cpu (default), gpu")
    p.add_argument("--set", dest="overrides", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set risk.max_depth=4 (repeatable)")


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default="none",
                   help="folder holding your own raw files, searched before data/raw and the mirror "
                   "(default: none)")
    p.add_argument("--allow-download", type=_bool, default=True, metavar="BOOL",
                   help="fall back to the public sources when no local copy exists (default true)")


def _data_dir(args: argparse.Namespace) -> str | None:
    value = (getattr(args, "data_dir", None) or "").strip()
    return None if value.lower() in ("", "none") else value


def _config(args: argparse.Namespace):
    overrides: dict[str, Any] = dict(args.overrides)
    if _data_dir(args):
        overrides["data.data_dir"] = _data_dir(args)
    if hasattr(args, "allow_download"):
        overrides["data.allow_download"] = args.allow_download
    return load_config(args.profile, overrides)


def _params(args: argparse.Namespace, cfg) -> dict[str, Any]:
    return {
        "profile": cfg.profile,
        "data_dir": _data_dir(args) or "none",
        "allow_download": str(getattr(args, "allow_download", True)).lower(),
    }


def cmd_data(args: argparse.Namespace) -> None:
    from retention.data.steps import data

    cfg = _config(args)
    data(cfg, _params(args, cfg), progress=not args.no_progress)


def cmd_main(args: argparse.Namespace) -> None:
    from retention.pipeline import main as run_main

    cfg = _config(args)
    run_main(cfg, _params(args, cfg), reuse=args.reuse)


def _run_id_option(name: str, help_text: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default="none", help=help_text)

    return add


def _step(func_name: str, keys: tuple[str, ...], module: str) -> Callable[[argparse.Namespace], None]:
    """A command that runs ``<module>.<func_name>`` with ``profile`` and the run-id options."""

    def run(args: argparse.Namespace) -> None:
        import importlib
        import inspect

        cfg = _config(args)
        params = {"profile": cfg.profile, **{k: getattr(args, k) for k in keys}}
        func = getattr(importlib.import_module(module), func_name)
        kwargs = {"progress": not args.no_progress} if "progress" in inspect.signature(func).parameters else {}
        func(cfg, params, **kwargs)

    return run


def cmd_score(args: argparse.Namespace) -> None:
    from pathlib import Path

    import mlflow

    from retention.serving.batch import score_file
    from retention.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())  # reads the registry; creates no experiment (a dry run writes nothing)
    out = score_file(args.model, Path(args.input), Path(args.output), args.chunk_size, args.dry_run,
                     progress=not args.no_progress, generation_budget_s=args.generation_budget_s, as_of=args.as_of)
    contacted = int(out["contact"].sum()) if len(out) else 0
    print(f"score: {len(out)} customers -> {args.output} ({contacted} contacted"
          f"{', dry run: nothing recorded' if args.dry_run else ''})")


def _scoring_io(p: argparse.ArgumentParser, input_help: str, output_help: str) -> None:
    """The options both scoring commands share: what to read, what to write, which model, dry run."""
    p.add_argument("--input", required=True, help=input_help)
    p.add_argument("--output", required=True, help=output_help)
    p.add_argument("--model", default="models:/retention@champion", help="composite model URI")
    p.add_argument("--dry-run", action="store_true", help="decide and write messages, record nothing in the ledger")


def _score_options(p: argparse.ArgumentParser) -> None:
    _scoring_io(p, "customers file (.parquet or .csv; Telco columns + customer_id)",
                "decisions file to write (.parquet or .csv)")
    p.add_argument("--chunk-size", type=int, default=2000, help="records per decision batch")
    p.add_argument("--as-of", type=_timestamp, default=None, metavar="TIME",
                   help="local time (ISO 8601, e.g. 2026-11-25T10:00) of records without local_time, for quiet "
                   "hours and the send time; decisions never read the date (default: now, with a warning)")
    p.add_argument("--generation-budget-s", type=float, default=3600.0,
                   help="seconds per chunk for writing messages; the rest get the approved template")


def cmd_score_spark(args: argparse.Namespace) -> None:
    from retention.serving.spark import score_files
    from retention.tracking import configure_tracking

    configure_tracking()
    counts = score_files(args.input, args.output, args.model, args.master, args.ledger_url, args.dry_run)
    print(f"score_spark: {counts['customers']} customers -> {args.output} ({counts['contacted']} contacted"
          f"{', dry run: nothing recorded' if args.dry_run else ''})")


def _score_spark_options(p: argparse.ArgumentParser) -> None:
    _scoring_io(p, "customers (Parquet, or CSV with a header); any path Spark reads",
                "decisions to write (a Parquet or CSV directory)")
    p.add_argument("--master", default=None,
                   help="Spark master (default: the spark-submit session, else local[2])")
    p.add_argument("--ledger-url", default=None,
                   help="SQLAlchemy URL of the contact ledger every executor reaches (Postgres on a cluster)")


def cmd_drift(args: argparse.Namespace) -> int:
    """Exit 0 (no drift), 1 (drift; 0 with --fail-on-drift false) or 2 (see ERROR_EXIT)."""
    from retention.errors import MonitoringError, RetentionError
    from retention.monitoring import steps as monitoring_steps

    cfg = _config(args)
    params = {"profile": cfg.profile, "window": args.window, "ledger_url": args.ledger_url or "none",
              "model_uri": args.model_uri, "fail_on_drift": str(args.fail_on_drift).lower()}
    try:
        out = monitoring_steps.drift(cfg, params, progress=not args.no_progress)
    except RetentionError:
        raise
    except Exception as exc:  # an unexpected failure must not read as "drift" (exit 1)
        if args.debug:
            raise
        raise MonitoringError(f"the drift check failed unexpectedly ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no message'}); "
                              "rerun with --debug for the traceback") from None
    return 1 if out.detected and args.fail_on_drift else 0


def _drift_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window", default="7d",
                   help="how far back from now to read the inference log: e.g. 24h, 7d, 2w, or all (default 7d)")
    p.add_argument("--ledger-url", default=None,
                   help="SQLAlchemy URL of the database the served model logs to (default: $RETENTION_LEDGER_URL, "
                   "else serving.ledger_url = sqlite:///ledger.db)")
    p.add_argument("--model-uri", default="models:/retention@champion",
                   help="the served composite model; its Telco train split, scored by it, is the reference")
    p.add_argument("--fail-on-drift", type=_bool, default=True, metavar="BOOL",
                   help="exit 1 when drift is detected (default true); false: exit 0, read the tag drift.detected")


def cmd_outcomes(args: argparse.Namespace) -> int | None:
    from retention.monitoring.outcomes import read_outcomes_file, record_outcomes
    from retention.monitoring.steps import ledger_url_of, open_log, redact

    cfg = _config(args)
    url = ledger_url_of(args.ledger_url, cfg)
    frame = read_outcomes_file(args.input)
    report = record_outcomes(open_log(url), frame)  # open_log: an existing database with an inference log
    print(f"outcomes: recorded {report.written} outcome(s) in {redact(url)} (customer ids stored as keyed hashes "
          "only)")
    if report.rejected:
        shown = list(report.rejected.items())[:20]
        print(f"outcomes: rejected {report.rejected_rows} row(s); the others were recorded. Fix these and send "
              "them again (re-sending recorded rows is harmless):", file=sys.stderr)
        for name, why in shown:
            print(f"  - {name}: {why}", file=sys.stderr)
        if len(report.rejected) > len(shown):
            print(f"  ... and {len(report.rejected) - len(shown)} more", file=sys.stderr)
        return InputError.exit_code
    return None


def cmd_outcome_report(args: argparse.Namespace) -> int:
    """Exit 0 (no alarm), 1 (a calibration alarm; 0 with --fail-on-alarm false) or 2 (see ERROR_EXIT)."""
    import json
    from pathlib import Path

    from retention.errors import MonitoringError, RetentionError
    from retention.monitoring.outcome_steps import outcome_report

    cfg = _config(args)
    params = {"profile": cfg.profile, "window": args.window, "as_of": args.as_of,
              "ledger_url": args.ledger_url or "none", "fail_on_alarm": str(args.fail_on_alarm).lower()}
    try:
        out = outcome_report(cfg, params, progress=not args.no_progress)
    except RetentionError:
        raise
    except Exception as exc:  # an unexpected failure must not read as an alarm (exit 1)
        if args.debug:
            raise
        raise MonitoringError(f"the outcome report failed unexpectedly ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no message'}); "
                              "rerun with --debug for the traceback") from None
    if args.json:
        Path(args.json).write_text(json.dumps(out.result, indent=2))
    return 1 if out.alarm and args.fail_on_alarm else 0


def _outcome_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window", default="90d",
                   help="decisions logged in this span before --as-of: e.g. 30d, 90d or all (default 90d)")
    p.add_argument("--as-of", dest="as_of", default="now",
                   help="the report's date (ISO, default now): a customer without a churn report counts as "
                   "retained once monitoring.outcome_horizon_days have passed since their latest decision")
    p.add_argument("--ledger-url", default=None,
                   help="SQLAlchemy URL of the database the served model logs to (default: $RETENTION_LEDGER_URL, "
                   "else serving.ledger_url = sqlite:///ledger.db)")
    p.add_argument("--fail-on-alarm", type=_bool, default=True, metavar="BOOL",
                   help="exit 1 when a calibration alarm fires (default true)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the report's figures (uplift with intervals, calibration, performance) here")


def _outcomes_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True,
                   help="CSV or Parquet with request_id and/or customer_id; accepted, churned, opted_out (true, "
                   "false or empty) and/or revenue; optionally offer_level_accepted (0-3) and churn_date; "
                   "outcome_date (ISO date). Bad rows are reported (exit 5); the others are recorded")
    p.add_argument("--ledger-url", default=None,
                   help="SQLAlchemy URL of the ledger database (default: $RETENTION_LEDGER_URL, else "
                   "serving.ledger_url)")

def _extra_preferences(p: argparse.ArgumentParser) -> None:
    p.add_argument("--extra-preferences", dest="extra_preferences", default="none", metavar="LABELS_CSV",
                   help="a review.csv labelled by people (`retention review-messages`): its pairs join the "
                   "training sets, split by prompt between the proxy reward model and the gold judge (default: none)")


def cmd_review_messages(args: argparse.Namespace) -> None:
    from retention.messaging.steps import review_messages

    review_messages(args.run_id, args.out, args.limit, args.seed)


def _review_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-id", dest="run_id", default="none",
                   help="ppo_text run whose paired SFT / PPO-text messages to review (default: the latest)")
    p.add_argument("--out", default="review", help="folder for review.html, review.csv and review_key.csv")
    p.add_argument("--limit", type=int, default=0, help="at most this many pairs (default 0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random order")


def cmd_init(args: argparse.Namespace) -> None:
    import mlflow

    from retention.tracking import configure_tracking

    exp_id = configure_tracking()
    artifacts = mlflow.get_experiment(exp_id).artifact_location  # the store's, local or a server's
    print(f"experiment id {exp_id} at {mlflow.get_tracking_uri()} (artifacts: {artifacts})")


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int | None], str, list[Callable]]] = {
    "init": (cmd_init, "create the MLflow experiment (default: sqlite:///mlflow.db, artifacts in ./mlartifacts)", []),
    "data": (cmd_data, "resolve, validate (Great Expectations), clean and split the raw data",
             [_common, _data_options]),
    "train_risk": (_step("train_risk", ("data_run_id",), "retention.tabular.steps"),
                   "train the calibrated churn-risk model (Telco) and register it as 'churn-risk'",
                   [_common, _run_id_option("data_run_id", "run id of the 'data' step to read (default: none = "
                                            "the configured data.processed_dir)")]),
    "train_accept": (_step("train_accept", ("data_run_id",), "retention.tabular.steps"),
                     "train the calibrated, offer-monotone acceptance model (Bank) and register 'offer-accept'",
                     [_common, _run_id_option("data_run_id", "run id of the 'data' step to read (default: none = "
                                              "the configured data.processed_dir)")]),
    "promote": (_step("promote", ("risk_run_id", "accept_run_id"), "retention.tabular.steps"),
                "gate the candidate models: alias 'champion' if they pass, else 'challenger' (with the reasons)",
                [_common, _run_id_option("risk_run_id", "train_risk run whose version to gate (default: latest)"),
                 _run_id_option("accept_run_id", "train_accept run whose version to gate (default: latest)")]),
    "train_policy": (_step("train_policy", ("data_run_id", "promote_run_id"), "retention.policy.steps"),
                     "train the PPO-Lagrangian retention policy on cohorts of Telco train customers",
                     [_common, _run_id_option("data_run_id", "run id of the 'data' step (default: none)"),
                      _run_id_option("promote_run_id", "run id of the 'promote' step whose champions to use "
                                     "(recorded; the champion aliases are read either way)")]),
    "evaluate_policy": (_step("evaluate_policy", ("data_run_id", "policy_run_id"), "retention.policy.steps"),
                        "evaluate PPO, the baselines and the index policy against the Lagrangian and LP "
                        "bounds on held-out campaigns, paired; gate the champion",
                        [_common, _run_id_option("data_run_id", "run id of the 'data' step (default: none)"),
                         _run_id_option("policy_run_id", "train_policy run to evaluate (default: latest PPO)")]),
    "sft": (_step("sft", ("data_run_id",), "retention.messaging.steps"),
            "fine-tune the message generator (LoRA SFT), evaluate it against the base model, register it",
            [_common, _run_id_option("data_run_id", "run id of the 'data' step (default: none)")]),
    "train_reward": (_step("train_reward", ("data_run_id", "sft_run_id", "extra_preferences"),
                           "retention.messaging.steps"),
                     "train the proxy and gold reward models (Bradley-Terry, LoRA); register them as 'reward-model'",
                     [_common, _run_id_option("data_run_id", "run id of the 'data' step (default: none)"),
                      _run_id_option("sft_run_id", "sft run whose generator's samples fix the reward normalisation "
                                     "(default: the latest SFT version)"), _extra_preferences]),
    "ppo_text": (_step("ppo_text", ("data_run_id", "sft_run_id", "reward_run_id"), "retention.messaging.steps"),
                 "PPO with an adaptive KL penalty on the SFT generator against the proxy reward model; win rates "
                 "over SFT by the gold reward model and a rubric; register and gate a 'message-generator' version",
                 [_common, _run_id_option("data_run_id", "run id of the 'data' step (default: none)"),
                  _run_id_option("sft_run_id", "sft run whose generator to start from (default: the latest SFT "
                                 "version)"),
                  _run_id_option("reward_run_id", "train_reward run whose proxy and gold models to use (default: "
                                 "the aliases proxy and gold)")]),
    "review-messages": (cmd_review_messages, "write a blind review sheet (HTML + CSV, hidden key) of a ppo_text "
                        "run's paired messages for people to label (not an entry point)", [_review_options]),
    "bundle": (_step("bundle", ("data_run_id", "evaluate_run_id", "sft_run_id", "promote_run_id", "generator_run_id"),
                         "retention.serving.steps"),
               "compose the champion models into the served 'retention' model; print demo decisions",
               [_common, _run_id_option("data_run_id", "run id of the 'data' step (default: none)"),
                _run_id_option("evaluate_run_id", "evaluate_policy run whose champion policy is bundled (recorded)"),
                _run_id_option("sft_run_id", "sft run whose generator is bundled (recorded)"),
                _run_id_option("promote_run_id", "promote run whose tabular champions are bundled (recorded)"),
                _run_id_option("generator_run_id", "ppo_text run whose gate decided the generator champion "
                               "(recorded; a new one makes main re-run bundle)")]),
    "score": (cmd_score, "batch-score a customers file in-process with the composite model (not an entry point)",
              [_score_options]),
    "score_spark": (cmd_score_spark, "batch-score customers on Spark with mlflow.pyfunc.spark_udf (local mode or a "
                    "cluster: entrypoints/score_spark.py)", [_score_spark_options]),
    "drift": (cmd_drift, "compare a window of the inference log with the reference (Evidently); exit 0 no drift, "
              "1 drift, 2 error", [_common, _drift_options]),
    "outcomes": (cmd_outcomes, "record what happened after decisions (accepted, churned, opted out, revenue); bad "
                 "rows are listed (exit 5), the others recorded", [_common, _outcomes_options]),
    "outcome_report": (cmd_outcome_report, "realised uplift against the holdout, calibration on outcomes, "
                       "performance before labels; exit 0, 1 calibration alarm, 2 error",
                       [_common, _outcome_report_options]),
    "main": (cmd_main, "run every step in order, reusing finished runs with the same parameters",
             [_common, _data_options]),
}


# --- scale-out command groups: `retention registry ...`, `retention vertex ...` (retention/cloud/) --------------
def _registry_group(p: argparse.ArgumentParser) -> None:
    from retention.cloud.registry_cli import add_registry_commands

    add_registry_commands(p)


def cmd_registry(args: argparse.Namespace) -> int | None:
    return args.registry_func(args)


def _vertex_group(p: argparse.ArgumentParser) -> None:
    from retention.cloud.vertex_cli import add_vertex_commands

    add_vertex_commands(p)


def cmd_vertex(args: argparse.Namespace) -> int | None:
    return args.vertex_func(args)


COMMANDS["registry"] = (cmd_registry, "stage transitions: status, transition, rollback, copy, sync (aliases stay "
                        "the source of truth; stages mirror them)", [_registry_group])
COMMANDS["vertex"] = (cmd_vertex, "run steps as Vertex AI custom jobs: submit STEP [--gpu] [--dry-run], pipeline",
                      [_vertex_group])
# --- end of scale-out command groups ----------------------------------------------------------------------------

# Commands whose exit codes are a contract for schedulers: every error exits with this code.
ERROR_EXIT = {"drift": 2, "outcome_report": 2}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retention",
        description="Churn-retention pipeline: each command is an MLflow Project entry point "
        "(`mlflow run . -e <command>`) and logs to MLflow tracking "
        "($MLFLOW_TRACKING_URI, default sqlite:///mlflow.db).",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide progress bars (they are shown only on a terminal anyway; RETENTION_PROGRESS=on|off)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (func, help_text, adders) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        for add in adders:
            add(p)
        if name == "main":
            p.add_argument("--reuse", type=_bool, default=True, metavar="BOOL",
                           help="reuse a finished step run with the same parameters and git commit (default true)")
            p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                           help="progress bars of every step: auto (only on a terminal, the default), on, off")
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from retention import console

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "progress", "auto") != "auto":  # `main --progress on|off`: for this and every step it launches
        os.environ[console.PROGRESS_ENV] = args.progress
    args.no_progress = not console.show_progress(not args.no_progress)  # bars only on a terminal
    console.setup(progress=not args.no_progress, debug=args.debug)
    logging.basicConfig(level=logging.INFO if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        code = args.func(args)
    except RetentionError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return ERROR_EXIT.get(args.command, exc.exit_code)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())

"""The ``data`` step, and how the other steps read what it wrote.

Every later step receives the ``data`` run's id (``data_run_id``): :func:`processed_dir_of` turns it
into the folder of validated Parquet splits (after checking they are unchanged), and
:func:`log_split_inputs` logs the splits a run read as MLflow datasets, the same datasets the
``data`` run logged, so the UI shows the lineage from ``data`` to each training and evaluation run.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from retention.config import Config
from retention.data.pipeline import DATASETS, load_split, outputs_match, prepare, read_manifest
from retention.errors import DataSourceError, DataValidationError
from retention.runs import step_run


def _log_report(report) -> None:
    mlflow.log_dict(report.result, f"gx/{report.suite}.json")
    mlflow.set_tag(f"gx.{report.suite}", "passed" if report.success else "failed")
    pct = report.statistics.get("success_percent")
    if pct is not None:
        mlflow.log_metric(f"gx/{report.suite}_success_pct", float(pct))


def data(cfg: Config, params: dict[str, Any], progress: bool = True) -> str:
    """The ``data`` step. Returns the run id."""
    with step_run("data", cfg, params) as run:
        try:
            result = prepare(cfg.data, sink=_log_report, progress=progress)
        except DataValidationError as exc:
            mlflow.log_text(exc.summary(), "gx/failure.txt")
            mlflow.set_tag("gx.verdict", "failed")
            raise
        mlflow.set_tag("gx.verdict", "passed")
        mlflow.log_dict(result.manifest, "data/manifest.json")
        for key, res in result.raw.items():
            mlflow.set_tag(f"raw.{key}", f"{res.origin}:{res.sha256[:12]}{'' if res.verified else ' (unverified)'}")
        for name, parts in result.splits.items():
            for split, df in parts.items():
                info = result.manifest["datasets"][name][split]
                mlflow.log_input(split_dataset(result.processed_dir, name, split, df, info), context=split)
                mlflow.log_metric(f"rows/{name}_{split}", info["rows"])
        for reason, n in result.dropped.items():
            mlflow.log_metric(f"dropped/{reason.replace(':', '_').replace('-', '_')}", n)
        mlflow.set_tag("processed_dir", str(result.processed_dir.resolve()))
        n_splits = sum(len(parts) for parts in result.splits.values())
        print(f"data: validated and wrote {len(result.splits)} datasets ({n_splits} splits) to {result.processed_dir}")
        for name in result.splits:
            rows = {s: result.manifest["datasets"][name][s]["rows"] for s in result.splits[name]}
            print(f"  {name:12s} {rows}")
        return run.info.run_id


def data_outputs_ok(run: Run) -> bool:
    """True when the Parquet files a finished ``data`` run wrote are still there, unchanged."""
    processed = run.data.tags.get("processed_dir")
    if not processed:
        return False
    manifest = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/data/manifest.json")
    return outputs_match(processed, manifest)


def processed_dir_of(data_run_id: str, cfg: Config) -> Path:
    """The processed-data folder handed over by a ``data`` run (or the configured one for 'none')."""
    if data_run_id in ("", "none"):
        return Path(cfg.data.processed_dir)
    run = MlflowClient().get_run(data_run_id)
    if not data_outputs_ok(run):
        raise DataSourceError(
            f"the outputs of data run {data_run_id} are missing or changed; run the 'data' step again."
        )
    return Path(run.data.tags["processed_dir"])


def split_dataset(processed_dir: Path | str, dataset: str, split: str, df: Any = None,
                  info: Mapping[str, Any] | None = None):
    """The MLflow dataset of one processed split, as the ``data`` run logged it.

    Name (``telco-train``), source (the Parquet file), targets and digest (the manifest's sha256)
    are the same as in the ``data`` run, so MLflow shows one dataset used by every run that read it:
    the lineage from ``data`` to each training and evaluation run. ``info`` is the split's manifest
    entry (read from ``processed_dir`` when not given).
    """
    info = info or read_manifest(processed_dir)["datasets"][dataset][split]
    if df is None:
        df = load_split(processed_dir, dataset, split)
    with warnings.catch_warnings():
        # MLflow hints about ambiguous local sources and integer columns: not actionable here.
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.data.from_pandas(df, source=str((Path(processed_dir) / info["path"]).resolve()),
                                       name=f"{dataset}-{split}", targets=DATASETS[dataset],
                                       digest=info["sha256"][:16])


def log_split_inputs(processed_dir: Path | str, dataset: str, splits: Mapping[str, Any] | tuple[str, ...]) -> dict:
    """``log_input`` each split of ``dataset`` this run read (context = the split); returns the datasets.

    ``splits`` is a tuple of split names, or a mapping ``split -> DataFrame`` when already loaded.
    """
    frames = dict(splits) if isinstance(splits, Mapping) else dict.fromkeys(splits)
    out = {}
    for split, df in frames.items():
        out[split] = split_dataset(processed_dir, dataset, split, df)
        mlflow.log_input(out[split], context=split)
    return out

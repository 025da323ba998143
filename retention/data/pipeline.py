"""The ``data`` step: resolve raw files, validate, clean, split, write Parquet + manifest.

Every suite runs before anything is written; outputs appear in ``processed_dir`` in one atomic
rename, so a failed run leaves the previous outputs (or nothing) in place, never a mix.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from retention.config import DataConfig
from retention.data import bank, preferences, telco
from retention.data.io import atomic_directory
from retention.data.sources import HH_SUBSETS, MANIFEST, Resolved, resolve, sha256_file
from retention.data.splits import SPLITS, grouped_split, label_rate, stratified_sample, stratified_split
from retention.data.validate import ValidationReport, validate_frame

log = logging.getLogger(__name__)

# dataset name -> (label column used for stratification / reporting, or None)
DATASETS: dict[str, str | None] = {
    "telco": telco.LABEL,
    "bank": bank.LABEL,
    "hh_rlhf": None,
    "oasst_sft": None,
    "oasst_pairs": None,
}
MANIFEST_NAME = "manifest.json"


@dataclass
class DataResult:
    """What the data step produced."""

    processed_dir: Path
    manifest: dict[str, Any]
    splits: dict[str, dict[str, pd.DataFrame]]
    reports: list[ValidationReport]
    raw: dict[str, Resolved]
    dropped: Counter = field(default_factory=Counter)


ReportSink = Callable[[ValidationReport], None]


def _checked(df: pd.DataFrame, suite: str, reports: list[ValidationReport], sink: ReportSink | None) -> None:
    report = validate_frame(df, suite)
    reports.append(report)
    if sink is not None:
        sink(report)
    report.raise_for_failure()


def _read_validated(module, path: Path, name: str, reports: list[ValidationReport],
                    sink: ReportSink | None) -> pd.DataFrame:
    """Read a tabular source, validate it raw, clean it, validate the result (suites ``<name>_raw/_processed``)."""
    raw = module.read_raw(path)
    _checked(raw, f"{name}_raw", reports, sink)
    df = module.clean(raw)
    _checked(df, f"{name}_processed", reports, sink)
    return df


def prepare(cfg: DataConfig, sink: ReportSink | None = None, progress: bool = True) -> DataResult:
    """Run the whole data step for ``cfg``; raises DataSourceError / DataValidationError."""
    reports: list[ValidationReport] = []
    with tqdm(total=len(MANIFEST) + 5, desc="data", unit="step", disable=not progress) as bar:
        raw: dict[str, Resolved] = {}
        for key in MANIFEST:
            bar.set_postfix_str(f"resolve {key}")
            raw[key] = resolve(
                key,
                data_dir=cfg.data_dir,
                cache_dir=cfg.cache_dir,
                mirror_dir=cfg.mirror_dir,
                allow_download=cfg.allow_download,
            )
            log.info("%s <- %s (%s%s)", key, raw[key].path, raw[key].origin,
                     "" if raw[key].verified else ", unverified")
            bar.update()

        bar.set_postfix_str("telco")
        tel = _read_validated(telco, raw["telco"].path, "telco", reports, sink)
        bar.update()

        bar.set_postfix_str("bank")
        bnk = _read_validated(bank, raw["bank"].path, "bank", reports, sink)
        bar.update()

        bar.set_postfix_str("preferences")
        hh, dropped = preferences.load_hh({s: raw[f"hh-rlhf/{s}"].path for s in HH_SUBSETS})
        _checked(hh, "preference_pairs", reports, sink)
        sft, pairs = preferences.load_oasst(raw["oasst1"].path)
        _checked(sft, "sft_pairs", reports, sink)
        _checked(pairs, "preference_pairs", reports, sink)
        bar.update()

        bar.set_postfix_str("split")
        tel = stratified_sample(tel, telco.LABEL, cfg.sample_rows, cfg.seed)
        bnk = stratified_sample(bnk, bank.LABEL, cfg.sample_rows, cfg.seed)
        args = (cfg.valid_frac, cfg.test_frac, cfg.seed)
        splits = {
            "telco": stratified_split(tel, telco.LABEL, *args),
            "bank": stratified_split(bnk, bank.LABEL, *args),
            "hh_rlhf": stratified_split(hh, "source", *args),
            "oasst_sft": grouped_split(sft, "tree_id", *args),
            "oasst_pairs": grouped_split(pairs, "tree_id", *args),
        }
        bar.update()

        bar.set_postfix_str("write")
        out = Path(cfg.processed_dir)
        manifest: dict[str, Any] = {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seed": cfg.seed,
            "fractions": {"train": 1 - cfg.valid_frac - cfg.test_frac, "valid": cfg.valid_frac, "test": cfg.test_frac},
            "sample_rows": cfg.sample_rows,
            "raw": {
                k: {"path": str(r.path), "origin": r.origin, "sha256": r.sha256, "verified": r.verified}
                for k, r in raw.items()
            },
            "dropped": dict(dropped),
            "datasets": {},
        }
        with atomic_directory(out) as tmp:
            for name, parts in splits.items():
                (tmp / name).mkdir()
                entry = {}
                for split in SPLITS:
                    path = tmp / name / f"{split}.parquet"
                    parts[split].to_parquet(path, index=False)
                    info = {"path": f"{name}/{split}.parquet", "rows": len(parts[split]), "sha256": sha256_file(path)}
                    label = DATASETS[name]
                    if label is not None:
                        info["positive_rate"] = round(label_rate(parts[split], label), 6)
                    entry[split] = info
                manifest["datasets"][name] = entry
            (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
        bar.update()
    return DataResult(out, manifest, splits, reports, raw, dropped)


def outputs_match(processed_dir: Path | str, manifest: dict[str, Any]) -> bool:
    """True when every split listed in ``manifest`` exists under ``processed_dir`` with its sha256."""
    base = Path(processed_dir)
    for parts in manifest.get("datasets", {}).values():
        for info in parts.values():
            path = base / info["path"]
            if not path.is_file() or sha256_file(path) != info["sha256"]:
                return False
    return True


def read_manifest(processed_dir: Path | str) -> dict[str, Any]:
    path = Path(processed_dir) / MANIFEST_NAME
    if not path.is_file():
        from retention.errors import DataSourceError

        raise DataSourceError(f"no processed data at {processed_dir} (missing {MANIFEST_NAME}). Run the 'data' "
                              "step first: `mlflow run . -e data` (or `retention data`).")
    return json.loads(path.read_text())


def load_split(processed_dir: Path | str, dataset: str, split: str) -> pd.DataFrame:
    """Read one processed split, e.g. ``load_split("data/processed", "telco", "train")``."""
    manifest = read_manifest(processed_dir)
    try:
        info = manifest["datasets"][dataset][split]
    except KeyError:
        from retention.errors import DataSourceError

        raise DataSourceError(f"processed data has no '{dataset}/{split}'; "
                              f"datasets: {sorted(manifest['datasets'])}") from None
    return pd.read_parquet(Path(processed_dir) / info["path"])

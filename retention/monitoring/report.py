"""Rendering a :class:`~retention.monitoring.drift.DriftResult`: files, plot, summary, workspace.

Computing a result (:func:`~retention.monitoring.drift.compute_drift`) and rendering it are separate,
as in Evidently (a ``Report`` computes a snapshot, the snapshot renders itself):

* :func:`save_reports` — the self-contained Evidently HTML (works offline), Evidently's JSON, and
  this project's result JSON (scores, summaries, decision mix, calibration);
* :func:`plot_scores` — per-column score against its threshold (matplotlib, Agg);
* :func:`summary_text` — the few lines a person reads: what drifted, by how much, how the
  predictions and decisions moved, where the report is, what to do next;
* :func:`add_to_workspace` — the snapshot into an Evidently workspace (``make monitor`` serves it).

Only aggregate values are rendered: no names, message texts, request or customer ids.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retention.monitoring.drift import ColumnDrift, DriftResult

NEXT_STEP = ("retrain on recent data and let the gates decide: `mlflow run . -e main --env-manager local` "
             "(or `make run`)")


@dataclass(frozen=True)
class ReportFiles:
    """Paths written by :func:`save_reports`.

    Attributes
    ----------
    html:
        ``report.html``: the Evidently report (self-contained HTML, works offline).
    evidently_json:
        ``evidently.json``: Evidently's snapshot as JSON.
    result_json:
        ``result.json``: :meth:`DriftResult.to_dict` (scores, summaries, decision mix, calibration).
    """

    html: Path
    evidently_json: Path
    result_json: Path


def save_reports(result: DriftResult, directory: Path | str) -> ReportFiles:
    """Write ``report.html``, ``evidently.json`` and ``result.json`` into ``directory``."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(folder / "report.html", folder / "evidently.json", folder / "result.json")
    result.snapshot.save_html(str(files.html))
    result.snapshot.save_json(str(files.evidently_json))
    files.result_json.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    return files


def plot_scores(result: DriftResult):
    """Horizontal bars: each column's score, its threshold as a tick; drifted columns in red.

    Returns
    -------
    matplotlib.figure.Figure
        Close it after use (``plt.close(fig)``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = list(result.columns)[::-1]  # the most drifted at the top
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.28 * len(cols) + 1.2)))
    y = range(len(cols))
    scores = [c.score if math.isfinite(c.score) else 0.0 for c in cols]
    colours = ["#c0392b" if c.drifted else ("#7f8c8d" if c.role == "feature" else "#2980b9") for c in cols]
    ax.barh(list(y), scores, color=colours, height=0.6)
    ax.scatter([c.threshold for c in cols], list(y), marker="|", s=220, color="black", zorder=3, label="threshold")
    ax.set_yticks(list(y), [f"{c.column} ({c.method})" for c in cols], fontsize=8)
    ax.set_xlabel("drift score (bars) vs threshold (|); red = drifted, blue = prediction")
    verdict = "DRIFT" if result.detected else "no drift"
    ax.set_title(f"{verdict}: {result.share_drifted:.0%} of columns drifted (alarm at {result.drift_share:.0%}); "
                 f"{result.current_rows:,} vs {result.reference_rows:,} rows", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def _value(summary: dict[str, Any], kind: str) -> str:
    """``mean 64.8`` (with the missing share if any) or the two largest category shares."""
    if kind == "numeric":
        mean = summary.get("mean")
        text = "no values" if mean is None else f"mean {mean:.4g}"
        if summary.get("missing"):
            text += f", {summary['missing']:.0%} missing"
        return text
    shares = summary.get("shares") or {}
    return ", ".join(f"{k} {v:.0%}" for k, v in list(shares.items())[:2])


def _moved_category(c: ColumnDrift) -> str:
    """``Contract: Month-to-month 55% -> 78%``: the category whose share moved most."""
    ref, cur = c.reference.get("shares") or {}, c.current.get("shares") or {}
    keys = set(ref) | set(cur)
    if not keys:
        return "no values"
    key = max(keys, key=lambda k: (abs(cur.get(k, 0.0) - ref.get(k, 0.0)), k))
    return f"{key} {ref.get(key, 0.0):.0%} -> {cur.get(key, 0.0):.0%}"


def _mean(summary: dict[str, Any]) -> str:
    return "n/a" if summary.get("mean") is None else f"{summary['mean']:.3f}"


def describe_column(c: ColumnDrift) -> str:
    """``MonthlyCharges  wasserstein 0.66 (threshold 0.25): mean 64.6 -> 84.0``."""
    score = "not comparable (no values on one side)" if not math.isfinite(c.score) else f"{c.score:.3f}"
    moved = (f"{_value(c.reference, c.kind)} -> {_value(c.current, c.kind)}" if c.kind == "numeric"
             else _moved_category(c))
    return f"{c.column:<17s} {c.method} {score} (threshold {c.threshold:g}): {moved}"


def summary_text(result: DriftResult, report_path: Path | str | None = None, run_id: str | None = None) -> str:
    """The short human summary printed by the ``drift`` step."""
    w = result.window
    span = ""
    if w.get("end"):
        span = f" {w['start'][:16] if w.get('start') else 'start of log'} .. {w['end'][:16]} UTC"
    label = f" (window {w['text']})" if w.get("text") else ""
    head = "DRIFT DETECTED" if result.detected else "no drift"
    lines = [f"drift: {head} in{span}{label}: {result.current_rows:,} decisions vs {result.reference_rows:,} "
             "reference rows"]
    if result.noisy:
        lines.append(f"  note: fewer than {result.min_rows} decisions: scores are noisy; prefer a wider window")
    drifted = result.drifted
    n = len(result.columns)
    lines.append(f"  {len(drifted)} of {n} columns drifted ({result.share_drifted:.0%}; the alarm is at "
                 f"{result.drift_share:.0%} or any prediction column)")
    for c in drifted:
        lines.append(f"    {describe_column(c)}")
    preds = sorted((c for c in result.columns if c.role == "prediction"),
                   key=lambda c: (c.column != "churn_risk", c.column))
    if preds:
        moves = ", ".join(f"{c.column} {_mean(c.reference)} -> {_mean(c.current)}{' (drifted)' if c.drifted else ''}"
                          for c in preds)
        lines.append(f"  predictions (mean): {moves}")
    mix = result.decision_mix
    if len(mix):
        parts = []
        for metric, row in mix.iterrows():
            if metric == "mean_delay_days":
                continue
            parts.append(f"{metric.replace('_', ' ')} {row['reference']:.0%} -> {row['current']:.0%}"
                         f"{' (moved)' if row['moved'] else ''}" if math.isfinite(row["current"]) else
                         f"{metric.replace('_', ' ')} {row['reference']:.0%} -> n/a")
        lines.append(f"  decisions: {'; '.join(parts)}")
    if result.ece is None:
        lines.append("  acceptance calibration: no outcomes recorded for this window (`retention outcomes`)")
    else:
        trust = "" if result.outcomes >= result.calibration_min_rows else (
            f"; fewer than {result.calibration_min_rows} outcomes, not yet reliable")
        cal = result.calibration
        pred = float((cal["predicted"] * cal["count"]).sum() / cal["count"].sum())
        real = float((cal["realised"] * cal["count"]).sum() / cal["count"].sum())
        lines.append(f"  acceptance calibration: {result.outcomes} outcomes, predicted {pred:.1%} vs realised "
                     f"{real:.1%}, ECE {result.ece:.3f}{trust}")
    if report_path:
        lines.append(f"  report: {report_path}")
    if run_id:
        lines.append(f"  MLflow run: {run_id} (artifacts under drift/, plot plots/drift_scores.png)")
    if result.detected:
        lines.append(f"  next: check the drifted columns above against upstream changes (prices, sign-up mix, "
                     f"data feeds); if the customers really changed, {NEXT_STEP}")
    else:
        lines.append("  next: nothing to do; run again on the next window")
    return "\n".join(lines)


def add_to_workspace(result: DriftResult, workspace_dir: Path | str, project_name: str = "retention",
                     name: str | None = None) -> str:
    """Add the snapshot (without data) to the Evidently workspace; create the project on first use.

    Returns
    -------
    str
        The snapshot id in the workspace.
    """
    from evidently.ui.workspace import Workspace

    Path(workspace_dir).mkdir(parents=True, exist_ok=True)
    ws = Workspace.create(str(workspace_dir))
    found = ws.search_project(project_name)
    project = found[0] if found else ws.create_project(project_name)
    if not found:
        project.description = "Drift of the retention model's inference log against its training reference"
        project.save()
    ref = ws.add_run(project.id, result.snapshot, include_data=False, name=name)
    return str(ref.id)

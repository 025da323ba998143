"""Benchmark: tabular predictors on the real data (cpu profile) — quality and training time.

Usage (after `make run` or `retention data` has written data/processed):

    .venv/bin/python benchmarks/tabular.py [--repeats 3] [--profile cpu]

Prints a Markdown table for BENCHMARKS.md. Training time is the wall-clock time of
`train_model` (fit + calibrate + baseline + test scoring), median over repeats.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics

from retention.config import load_config
from retention.data.pipeline import load_split
from retention.tabular.metrics import bootstrap_ci
from retention.tabular.train import ACCEPT, RISK, accept_xy, risk_xy, train_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", default="cpu")
    args = ap.parse_args()
    cfg = load_config(args.profile)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"profile {args.profile}\n")
    print("| model | variant | test ROC-AUC | test PR-AUC | test ECE (10 bins) | Brier | log loss |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    timings = {}
    for spec, dataset, to_xy, model_cfg in (("risk", "telco", risk_xy, cfg.risk), ("accept", "bank", accept_xy,
                                                                                      cfg.accept)):
        model_spec = RISK if spec == "risk" else ACCEPT
        sp = {s: to_xy(load_split(cfg.data.processed_dir, dataset, s)) for s in ("train", "valid", "test")}
        runs = [train_model(model_spec, sp["train"], sp["valid"], sp["test"], model_cfg, seed=cfg.data.seed,
                            ece_bins=cfg.gate.ece_bins) for _ in range(args.repeats)]
        r = runs[0]
        timings[model_spec.registered_name] = (statistics.median(x.seconds for x in runs), r.rows)
        for variant, m in r.metrics.items():
            print(f"| {model_spec.registered_name} | {variant} | {m['roc_auc']:.4f} | {m['pr_auc']:.4f} | "
                  f"{m['ece']:.4f} | {m['brier']:.4f} | {m['log_loss']:.4f} |")
        auc_ci = bootstrap_ci(r.y_test, r.test_predictions["calibrated"], "roc_auc")
        ece_ci = bootstrap_ci(r.y_test, r.test_predictions["calibrated"], "ece")
        print(f"| {model_spec.registered_name} | calibrated, 95% bootstrap CI | {auc_ci[0]:.4f}–{auc_ci[1]:.4f} | "
              f"| {ece_ci[0]:.4f}–{ece_ci[1]:.4f} | | |")
    print(f"\n| model | train time (median of {args.repeats}) | rows fit / calibration / valid / test |")
    print("| --- | --- | --- |")
    for name, (sec, rows) in timings.items():
        print(f"| {name} | {sec:.2f} s | {rows['fit']} / {rows['calibration']} / {rows['valid']} / {rows['test']} |")


if __name__ == "__main__":
    main()

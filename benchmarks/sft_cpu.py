"""Benchmark: SFT seconds per step and generation speed of SmolLM2-135M on this CPU, per setting.

Usage (no `make run` needed: it reads the Telco and OpenAssistant files of the data mirror):

    .venv/bin/python benchmarks/sft_cpu.py [--steps 6] [--variants old,new] [--messages 64]

Measures (1) the token lengths of the SFT examples with the SmolLM2 tokenizer, as TRL prepares
them, and how many each `max_length` would cut; (2) SFT seconds per training step (LoRA, the
`cpu` profile's batch) for each variant, each in a fresh process (its peak memory is reported),
leaving out the first step (warm-up): the median and the best of the others (the best is the
least disturbed by other processes); list a variant twice to interleave them; (3) greedy
generation of `--messages` messages (`max_new_tokens` 56, one batch, the serving path) with the
base model in float32 and bfloat16, after a warm-up call. Variants:

* `old`: what TRL's `SFTConfig` defaults gave before: `bf16=True`, `gradient_checkpointing=True`,
  `max_length` 160;
* `new`: the `cpu` profile now: `train_dtype=auto` (the measured choice), no gradient
  checkpointing, `max_length` 192, threads = every available core;
* `new+checkpointing`: `new` with gradient checkpointing, to price it alone.

Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from retention import hardware
from retention.config import load_config

VARIANTS = {
    "old": {"messaging.train_dtype": "bfloat16", "messaging.gradient_checkpointing": True,
            "messaging.max_length": 160},
    "new": {},
    "new+checkpointing": {"messaging.gradient_checkpointing": True},
}


def customers(mirror: Path) -> pd.DataFrame:
    from retention.data import telco

    return telco.clean(telco.read_raw(mirror / "telco" / "WA_Fn-UseC_-Telco-Customer-Churn.csv"))


def dataset(mirror: Path, n: int, cfg):
    """The `sft` step's mix (retention examples + OpenAssistant replies), from the mirror's raw files."""
    from retention.data.preferences import load_oasst
    from retention.messaging.sft_data import sft_dataset

    oasst, _ = load_oasst(mirror / "oasst1" / "en_100_tree.jsonl")
    return sft_dataset(customers(mirror), oasst, n, cfg.oasst_fraction, cfg.seed)[0]


def base_model(cfg, cache_dir: str):
    from retention.messaging.base_model import load_base_model

    return load_base_model(cfg.base_model, cache_dir)


def lengths(args, cfg) -> None:
    """Token lengths as TRL tokenizes the examples (no truncation), per source."""
    from trl import SFTConfig, SFTTrainer

    ds = dataset(args.mirror, cfg.sft_examples, cfg)
    model, tok = base_model(cfg, args.cache_dir)
    tok.padding_side = "right"
    with tempfile.TemporaryDirectory() as out:
        trainer = SFTTrainer(model=model, train_dataset=ds, processing_class=tok,
                             args=SFTConfig(output_dir=out, max_length=None, completion_only_loss=True,
                                            report_to="none", use_cpu=True, bf16=False))
        prepared = trainer.train_dataset
    total = np.array([len(x) for x in prepared["input_ids"]])
    reply = np.array([sum(1 for t in x if t != -100) for x in prepared["labels"]])
    source = np.array(ds["source"])
    print(f"### Token lengths with the SmolLM2 tokenizer ({len(ds)} examples, TRL's preparation)\n")
    print("| source | n | total p0 / p10 / p50 / p90 / max | prompt min-max | reply min-max | "
          "cut at 160 | cut at 192 | dropped at 160 / 192 (prompt fills it) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in sorted(set(source)):
        t, r = total[source == name], reply[source == name]
        p = t - r
        pct = " / ".join(f"{v:.0f}" for v in np.percentile(t, [0, 10, 50, 90, 100]))
        print(f"| {name} | {len(t)} | {pct} | {p.min()}-{p.max()} | {r.min()}-{r.max()} | {(t > 160).sum()} | "
              f"{(t > 192).sum()} | {(p >= 160).sum()} / {(p >= 192).sum()} |")
    print()


def one_variant(args, name: str) -> dict:
    """Train `--steps` steps with one variant; seconds of each step from the loss log (logged every step)."""
    from retention.messaging.sft import LossLogger, train_sft

    cfg = load_config("cpu", {**VARIANTS[name], "messaging.max_steps": args.steps}).messaging
    ds = dataset(args.mirror, args.examples, cfg)
    model, tok = base_model(cfg, args.cache_dir)
    stamps: list[float] = []

    def sink(logs: dict[str, float], step: int) -> None:
        if "loss" in logs:
            stamps.append(time.perf_counter())

    start = time.perf_counter()
    result = train_sft(model, tok, ds, cfg, progress=False, callbacks=[LossLogger(sink, [])])
    steps = np.diff([start, *stamps])
    return {"variant": name, **{k: result.settings[k] for k in ("bf16", "gradient_checkpointing", "torch_threads")},
            "max_length": cfg.max_length, "batch": cfg.per_device_train_batch_size,
            "first_step_s": float(steps[0]), "s_per_step": float(np.median(steps[1:])),
            "best_step_s": float(np.min(steps[1:])),
            "steps_s": [round(float(s), 2) for s in steps],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def sft_steps(args) -> None:
    rows = []
    for name in args.variants.split(","):
        out = subprocess.run([sys.executable, __file__, "--only", name, "--steps", str(args.steps),
                              "--examples", str(args.examples), "--cache-dir", args.cache_dir,
                              "--mirror", str(args.mirror)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"### SFT seconds per step ({args.steps} steps, the first left out; each variant in a fresh process; "
          f"{args.examples} retention examples + OpenAssistant)\n")
    print("| variant | bf16 | gradient checkpointing | max_length | batch | threads | median s/step | best step s | "
          "setup + first step s | each step s | peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['variant']} | {r['bf16']} | {r['gradient_checkpointing']} | {r['max_length']} | {r['batch']} | "
              f"{r['torch_threads']} | {r['s_per_step']:.2f} | {r['best_step_s']:.2f} | {r['first_step_s']:.2f} | "
              f"{', '.join(map(str, r['steps_s']))} | {r['peak_rss_mb']:.0f} |")
    print()


def generation(args) -> None:
    from retention.messaging.base_model import prepare_for_inference
    from retention.messaging.evaluate import generate_batch
    from retention.messaging.prompts import facts_from_record
    from retention.messaging.sft_data import name_for
    from retention.messaging.shield import default_shield
    from retention.policy import OFFER_PERCENT

    cfg = load_config("cpu").messaging
    rows = customers(args.mirror).sample(n=args.messages, random_state=0).to_dict("records")
    facts = [facts_from_record({**r, "name": name_for(r["customerID"])}, OFFER_PERCENT[i % len(OFFER_PERCENT)])
             for i, r in enumerate(rows)]
    shield = default_shield()
    print(f"### Generation: {args.messages} messages in one batch, max_new_tokens {args.max_new_tokens}, "
          "base model, after a warm-up call\n")
    print("| dtype | seconds | messages/s | pass the shield |")
    print("| --- | --- | --- | --- |")
    for dtype in ("float32", "bfloat16"):
        model, tok = base_model(cfg, args.cache_dir)
        model = prepare_for_inference(model, dtype)
        generate_batch(model, tok, facts[:4], 4, 4)  # warm-up
        start = time.perf_counter()
        texts = generate_batch(model, tok, facts, args.max_new_tokens, args.messages)
        seconds = time.perf_counter() - start
        passed = sum(not shield.check(t, f.name, f.offer_pct) for t, f in zip(texts, facts, strict=True))
        print(f"| {dtype} | {seconds:.1f} | {len(texts) / seconds:.2f} | {passed} / {len(texts)} |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="training steps per variant (the first is warm-up)")
    ap.add_argument("--examples", type=int, default=48, help="retention examples in the timing dataset")
    ap.add_argument("--variants", default="old,new", help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--messages", type=int, default=64, help="messages generated per dtype (0: skip)")
    ap.add_argument("--max-new-tokens", type=int, default=56)
    ap.add_argument("--skip-lengths", action="store_true")
    ap.add_argument("--cache-dir", default=load_config("cpu").messaging.model_cache_dir,
                    help="where the dequantised base model is cached")
    ap.add_argument("--mirror", type=Path, default=Path(load_config("cpu").data.mirror_dir),
                    help="data mirror with telco/ and oasst1/")
    ap.add_argument("--only", choices=sorted(VARIANTS), help=argparse.SUPPRESS)  # one variant, JSON out
    args = ap.parse_args()
    if args.only:
        print(json.dumps(one_variant(args, args.only)))
        return
    facts = hardware.describe("auto")
    print(f"CPU: {facts['hardware.cpu_model']} ({facts['hardware.flags']}; torch {facts['hardware.cpu_capability']}), "
          f"{facts['hardware.cores']} cores; auto dtype: {facts['hardware.dtype']} (probe matmul "
          f"{facts['hardware.matmul_fp32_ms']} ms float32, {facts['hardware.matmul_bf16_ms']} ms bfloat16)\n")
    if not args.skip_lengths:
        lengths(args, load_config("cpu").messaging)
    if args.steps > 1 and args.variants:
        sft_steps(args)
    if args.messages:
        generation(args)


if __name__ == "__main__":
    main()

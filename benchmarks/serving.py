"""Benchmark: the composite model in-process and over REST, beside the bare churn-risk model.

Usage (after `make run`):

    .venv/bin/python benchmarks/serving.py [--n 20000] [--requests 200] [--messages 128]

Measures (1) in-process decisions without messages (dry run) per second, with the inference log
on and off, and single-customer requests per second with MLflow tracing on and off (one trace per
request; traces go to the experiment in force, here `retention`); (2) batched message writing
(generator + shield) per second and how many generations
passed the shield, for each `--generation-variants` value (a `generation_dtype`, or `int8` for
`generation_quantize=int8`), after a warm-up call; (3) sequential single-customer REST latency of
`mlflow models serve` for the composite (decision only; inference log on and off) and for the bare
churn-risk model, p50 and p99, with each server's peak resident memory. Prints the CPU, then
Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd

from retention.cloud.postgres import free_port
from retention.data.pipeline import load_split
from retention.messaging.sft_data import name_for
from retention.tracking import tracking_uri


def customers(n: int) -> pd.DataFrame:
    test = load_split("data/processed", "telco", "test")
    frame = pd.concat([test] * (n // len(test) + 1), ignore_index=True).head(n)
    frame["customer_id"] = [f"{c}-{i}" for i, c in enumerate(frame["customerID"])]
    frame["name"] = [name_for(c) for c in frame["customerID"]]
    return frame.drop(columns=["customerID", "Churn"])


def _peak_rss_mb(pid: int) -> float:
    """Peak RSS (VmHWM) over a process and its children, in MB."""
    total = 0
    for p in [pid, *[int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def rest_latency(model_uri: str, records: list[dict], env: dict) -> tuple[float, float, float]:
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model_uri,
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)  # noqa: S310
                break
            except OSError:
                time.sleep(1)
        times = []
        for i, rec in enumerate(records):
            body = json.dumps({"dataframe_records": [rec]}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
            start = time.perf_counter()
            with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
                resp.read()
            if i >= 5:  # warm-up
                times.append((time.perf_counter() - start) * 1000)
        times.sort()
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
        return statistics.median(times), p99, _peak_rss_mb(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def latest_generator(serving):
    """The newest ``message-generator`` version, prepared as serving prepares a bundled one."""
    from mlflow.tracking import MlflowClient

    from retention.messaging.base_model import prepare_for_inference
    from retention.serving.service import Generator

    version = MlflowClient().search_model_versions("name='message-generator'", order_by=["version_number DESC"],
                                                   max_results=1)[0].version
    print(f"(the bundle has no champion generator: measuring message-generator v{version})")
    gen = mlflow.pyfunc.load_model(f"models:/message-generator/{version}").unwrap_python_model()
    model = prepare_for_inference(gen.model, serving.generation_dtype, serving.generation_quantize)
    return Generator(model, gen.tokenizer, serving.max_new_tokens or gen.spec["max_new_tokens"],
                     serving.generation_batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models:/retention@champion")
    ap.add_argument("--risk-model", default="models:/churn-risk@champion")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--messages", type=int, default=128)
    ap.add_argument("--generation-variants", default="auto,float32,bfloat16,int8",
                    help="comma-separated generation_dtype values (or int8) to measure message writing with")
    args = ap.parse_args()
    mlflow.set_tracking_uri(tracking_uri())
    tmp = Path(tempfile.mkdtemp())
    os.environ["RETENTION_LEDGER_URL"] = f"sqlite:///{tmp / 'bench.db'}"
    from retention.hardware import cpu_info

    info = cpu_info()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {info['model']} ({info['flags']}); "
          f"model {args.model}\n")
    frame = customers(args.n).assign(dry_run=True, with_message=False)
    inproc = {}
    for log_on in (True, False):
        service = mlflow.pyfunc.load_model(args.model, model_config={"inference_log": log_on}
                                           ).unwrap_python_model().service
        service.decide(frame.head(200))
        start = time.perf_counter()
        out = service.decide(frame)
        inproc[log_on] = args.n / (time.perf_counter() - start)

    # MLflow tracing costs per request (one trace each), so measure one-customer requests, tracing on / off
    single = frame.head(args.requests).to_dict("records")
    traced = {}
    for tracing in (True, False):
        service = mlflow.pyfunc.load_model(args.model, model_config={"tracing": tracing}).unwrap_python_model().service
        for r in single[:10]:
            service.decide(pd.DataFrame([r]))
        start = time.perf_counter()
        for r in single:
            service.decide(pd.DataFrame([r]))
        if tracing:
            mlflow.flush_trace_async_logging()  # the traces are written, not just queued
        traced[tracing] = len(single) / (time.perf_counter() - start)

    contacted = out[out["decision"].map(lambda d: d["contact"])]["customer_id"].head(args.messages)
    msg_frame = frame[frame["customer_id"].isin(contacted)].assign(with_message=True)
    message_rows = []
    for dtype in args.generation_variants.split(","):
        config = {"generation_time_budget_s": 1e9, **({"generation_quantize": "int8"} if dtype == "int8"
                                                     else {"generation_dtype": dtype})}
        svc = mlflow.pyfunc.load_model(args.model, model_config=config).unwrap_python_model().service
        if svc.generator is None:  # a bundle without a champion generator sends templates: measure the latest one
            svc.generator = latest_generator(svc.serving)
        svc.decide(msg_frame.head(4))  # warm-up: the first call builds the CPU kernels
        start = time.perf_counter()
        msgs = svc.decide(msg_frame)
        rate = len(msg_frame) / (time.perf_counter() - start)
        generated = int((msgs["message_source"] == "generator").sum())
        used = "int8 decoder, float32 lm_head" if dtype == "int8" else next(svc.generator.model.parameters()).dtype
        message_rows.append((dtype, str(used).removeprefix("torch."), rate, generated))
        del svc
    peak_inproc = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    records = frame.head(args.requests + 5).to_dict("records")
    comp = rest_latency(args.model, records, env)
    no_log = {**env, "MLFLOW_PYFUNC_INFERENCE_CONFIG": '{"inference_log": false}'}
    comp_nolog = rest_latency(args.model, records, no_log)
    risk_cols = [c for c in frame.columns if c not in ("customer_id", "name", "dry_run", "with_message")]
    bare = rest_latency(args.risk_model, [{k: r[k] for k in risk_cols} for r in records], env)

    print("| measure | value |\n| --- | --- |")
    print(f"| in-process decisions without messages ({args.n:,} customers, dry run), inference log on / off | "
          f"{inproc[True]:,.0f} / {inproc[False]:,.0f} customers/s |")
    print(f"| in-process single-customer requests ({len(single)} sequential, dry run), MLflow tracing on / off | "
          f"{traced[True]:,.0f} / {traced[False]:,.0f} requests/s |")
    for dtype, used, rate, generated in message_rows:
        print(f"| batched messages, generator + shield ({len(msg_frame)} contacts, {dtype} -> {used}) | "
              f"{rate:.2f} messages/s ({generated} passed the shield, {len(msg_frame) - generated} template "
              f"fallbacks) |")
    print(f"| peak memory of the in-process benchmark | {peak_inproc:,.0f} MB |")
    print(f"| REST `retention` decision only, p50 / p99 ({args.requests} sequential requests), inference log on | "
          f"{comp[0]:.1f} ms / {comp[1]:.1f} ms (server peak RSS {comp[2]:,.0f} MB) |")
    print(f"| REST `retention` decision only, p50 / p99, inference log off | "
          f"{comp_nolog[0]:.1f} ms / {comp_nolog[1]:.1f} ms |")
    print(f"| REST bare `churn-risk`, p50 / p99 | {bare[0]:.1f} ms / {bare[1]:.1f} ms "
          f"(server peak RSS {bare[2]:,.0f} MB) |")


if __name__ == "__main__":
    main()

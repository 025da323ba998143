"""Benchmark: the composite model in-process and over REST, beside the bare churn-risk model.

Usage (after `make run`):

    .venv/bin/python benchmarks/serving.py [--n 20000] [--requests 200] [--messages 128]

Measures (1) in-process decisions without messages (dry run) per second, with the inference log
on and off, and single-customer requests per second with MLflow tracing on every request, at the
shipped default sampling (``serving.trace_sampling``) and off, in blocks of 20 requests per variant
in turn (A B C A B C): requests/s by wall time, and the process's CPU time per request with each
block's trace export included (the cost of tracing); (2) batched message writing (generator +
shield) per second and how many generations passed the shield, for each `--generation-variants`
value (a `generation_dtype`, `int8` for `generation_quantize=int8`, or `none`), after a warm-up
call; (3) over REST (`mlflow models serve`, one uvicorn worker, the default): single-customer
booked decisions p50 / p99 with the inference log and tracing on (the bundle's sampling), the same
with tracing off, and
the bare churn-risk model, the three servers called round-robin; then the composite under 1, 4 and
16 concurrent clients. Prints the CPU, then Markdown for BENCHMARKS.md.
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
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd

from retention.cloud.postgres import free_port
from retention.config import load_config
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


class Server:
    """``mlflow models serve`` of ``model_uri`` on loopback (``workers`` uvicorn workers), for timing."""

    def __init__(self, model_uri: str, env: dict, workers: int = 1):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager",
             "local", "-h", "127.0.0.1", "-p", str(self.port), "-w", str(workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=2)  # noqa: S310
                return
            except OSError:
                time.sleep(1)
        raise RuntimeError(f"server for {model_uri} did not start")

    def request(self, records: list[dict]) -> urllib.request.Request:
        body = json.dumps({"dataframe_records": records}, default=str).encode()
        return urllib.request.Request(f"http://127.0.0.1:{self.port}/invocations", data=body,
                                      headers={"Content-Type": "application/json"})

    def call(self, record: dict) -> float:
        """Milliseconds to answer one record."""
        req = self.request([record])
        start = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310
            resp.read()
        return (time.perf_counter() - start) * 1000

    def post(self, records: list[dict], timeout: float = 600) -> tuple[int, dict]:
        """The HTTP status and JSON body of one request (a 400's field errors too)."""
        try:
            with urllib.request.urlopen(self.request(records), timeout=timeout) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def stop(self) -> float:
        rss = _peak_rss_mb(self.proc.pid)
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)
        return rss


def percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def interleaved(servers: dict[str, Server], records: dict[str, list[dict]], rounds: int) -> dict[str, list[float]]:
    """Sequential single-record requests, one to each server in turn (A B C A B C ...), after 5 warm-ups each."""
    times: dict[str, list[float]] = {k: [] for k in servers}
    for i in range(rounds + 5):
        for k, server in servers.items():
            t = server.call(records[k][i % len(records[k])])
            if i >= 5:
                times[k].append(t)
    return times


def concurrent(server: Server, records: list[dict], clients: int, per_client: int) -> list[float]:
    """``clients`` threads each sending ``per_client`` single-record requests back to back."""
    from concurrent.futures import ThreadPoolExecutor

    def client(c: int) -> list[float]:
        return [server.call(records[(c * per_client + j) % len(records)]) for j in range(per_client)]

    with ThreadPoolExecutor(clients) as pool:
        return [t for ts in pool.map(client, range(clients)) for t in ts]


def latest_generator(serving):
    """The newest ``message-generator`` version, prepared as serving prepares a bundled one."""
    from mlflow.tracking import MlflowClient

    from retention.messaging.base_model import prepare_for_inference
    from retention.messaging.sampling import Sampling
    from retention.serving.service import Generator

    version = MlflowClient().search_model_versions("name='message-generator'", order_by=["version_number DESC"],
                                                   max_results=1)[0].version
    print(f"(the bundle has no champion generator: measuring message-generator v{version})")
    gen = mlflow.pyfunc.load_model(f"models:/message-generator/{version}").unwrap_python_model()
    model = prepare_for_inference(gen.model, serving.generation_dtype, serving.generation_quantize)
    return Generator(model, gen.tokenizer, serving.max_new_tokens or gen.spec["max_new_tokens"],
                     serving.generation_batch_size, Sampling.of(serving))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models:/retention@champion")
    ap.add_argument("--risk-model", default="models:/churn-risk@champion")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--messages", type=int, default=128)
    ap.add_argument("--generation-variants", default="auto,float32,bfloat16,int8",
                    help="comma-separated generation_dtype values (or int8) to measure message writing with; "
                    "'none' skips message writing")
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

    # MLflow tracing costs per request (one trace each): one-customer requests, tracing on (every request /
    # the default sampling / off), measured round-robin so that the machine's drift hits each alike
    single = frame.head(args.requests).to_dict("records")
    sampling = load_config("cpu").serving.trace_sampling  # the shipped default (a bundle may predate it)
    variants = {"on (all)": {"tracing": True, "trace_sampling": 1.0},
                "on (default sampling)": {"tracing": True, "trace_sampling": sampling}, "off": {"tracing": False}}
    services = {k: mlflow.pyfunc.load_model(args.model, model_config=c).unwrap_python_model().service
                for k, c in variants.items()}
    for svc in services.values():
        for r in single[:10]:
            svc.decide(pd.DataFrame([r]))
    mlflow.flush_trace_async_logging()
    # blocks of 20 requests per variant in turn (A B C A B C ...). The cost is the process's CPU time (every
    # thread's) from a block's start until its traces are written: the export runs in background threads,
    # and a block must pay for its own traces. MLflow's flush waits a second or two whatever the queue
    # holds, so wall time is taken without it (requests/s) and the flush counts in CPU time only.
    spent = {k: 0.0 for k in services}
    cpu = {k: 0.0 for k in services}
    for lo in range(0, len(single), 20):
        for k, svc in services.items():
            c0, start = time.process_time(), time.perf_counter()
            for r in single[lo:lo + 20]:
                svc.decide(pd.DataFrame([r]))
            spent[k] += time.perf_counter() - start
            mlflow.flush_trace_async_logging()
            cpu[k] += time.process_time() - c0
    traced = {k: len(single) / v for k, v in spent.items()}
    cpu_ms = {k: 1000 * v / len(single) for k, v in cpu.items()}

    contacted = out[out["decision"].map(lambda d: d["contact"])]["customer_id"].head(args.messages)
    msg_frame = frame[frame["customer_id"].isin(contacted)].assign(with_message=True)
    message_rows = []
    for dtype in [v for v in args.generation_variants.split(",") if v != "none"]:
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
    records = frame.assign(dry_run=False).head(4000).to_dict("records")  # booked, as real traffic is
    risk_cols = [c for c in frame.columns if c not in ("customer_id", "name", "dry_run", "with_message")]
    bare_records = [{k: r[k] for k in risk_cols} for r in records]
    off = {**env, "MLFLOW_PYFUNC_INFERENCE_CONFIG": '{"tracing": false}'}
    servers = {"retention": Server(args.model, env), "retention, tracing off": Server(args.model, off),
               "churn-risk": Server(args.risk_model, env)}
    try:
        rest = interleaved(servers, {"retention": records, "retention, tracing off": records[2000:],
                                     "churn-risk": bare_records}, args.requests)
        load = {c: concurrent(servers["retention"], records[1000:], c, max(args.requests // c, 20))
                for c in (1, 4, 16)}
    finally:
        rss = {k: srv.stop() for k, srv in servers.items()}

    print("| measure | value |\n| --- | --- |")
    print(f"| in-process decisions without messages ({args.n:,} customers, dry run), inference log on / off | "
          f"{inproc[True]:,.0f} / {inproc[False]:,.0f} customers/s |")
    print(f"| in-process single-customer requests ({len(single)} sequential, dry run, blocks round-robin), tracing "
          f"every request / the default sampling ({sampling:g}) / off | {traced['on (all)']:,.0f} / "
          f"{traced['on (default sampling)']:,.0f} / {traced['off']:,.0f} requests/s; CPU per request, trace "
          f"export included, {cpu_ms['on (all)']:.1f} / {cpu_ms['on (default sampling)']:.1f} / {cpu_ms['off']:.1f} ms "
          f"(tracing costs {100 * (cpu_ms['on (all)'] / cpu_ms['off'] - 1):.0f} % / "
          f"{100 * (cpu_ms['on (default sampling)'] / cpu_ms['off'] - 1):.0f} %) |")
    for dtype, used, rate, generated in message_rows:
        print(f"| batched messages, generator + shield ({len(msg_frame)} contacts, {dtype} -> {used}) | "
              f"{rate:.2f} messages/s ({generated} passed the shield, {len(msg_frame) - generated} template "
              f"fallbacks) |")
    print(f"| peak memory of the in-process benchmark | {peak_inproc:,.0f} MB |")
    p50 = {k: percentiles(v) for k, v in rest.items()}
    print(f"| REST `retention` decision only, p50 / p99 ({args.requests} sequential requests each, round-robin with "
          f"the two below), inference log and tracing on | {p50['retention'][0]:.1f} ms / {p50['retention'][1]:.1f} ms "
          f"(server peak RSS {rss['retention']:,.0f} MB) |")
    print(f"| REST `retention`, tracing off | {p50['retention, tracing off'][0]:.1f} ms / "
          f"{p50['retention, tracing off'][1]:.1f} ms |")
    print(f"| REST bare `churn-risk`, p50 / p99 | {p50['churn-risk'][0]:.1f} ms / {p50['churn-risk'][1]:.1f} ms "
          f"(server peak RSS {rss['churn-risk']:,.0f} MB) |")
    ratio = p50["retention"][0] / p50["churn-risk"][0]
    print(f"| REST `retention` p50 / bare `churn-risk` p50 | {ratio:.2f} x |")
    for c, times in load.items():
        q = percentiles(times)
        print(f"| REST `retention` under {c} concurrent client(s), 1 uvicorn worker, p50 / p99 | "
              f"{q[0]:.1f} ms / {q[1]:.1f} ms ({len(times)} requests) |")
    print(f"| p99 under 16 clients / p50 under 1 | {percentiles(load[16])[1] / percentiles(load[1])[0]:.1f} x |")


if __name__ == "__main__":
    main()

"""Probe MLflow's input-schema enforcement for typed string/double/boolean/long columns.

Run with the MLflow under test:  <venv>/bin/python probe.py [--out result.txt]

Logs a tiny pyfunc (it returns, per row, what it received: repr, Python type and the column dtype)
with the signature
    customer_id string required, request_id string optional, TotalCharges double optional,
    dry_run boolean optional, tenure long optional  ->  received: string
to a file: tracking store in a temp dir, then
  a. in-process: mlflow.pyfunc.load_model(uri).predict(DataFrame)
  b. REST: `mlflow models serve --env-manager local` on 127.0.0.1, POST /invocations in the
     dataframe_records, inputs and instances formats.
Records what the model received or the exception / HTTP body, and whether any request value is
echoed in an error. Writes a text table (--out) and the same as JSON (--out with .json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pandas as pd

# Distinctive request values: if one of them shows up in an error, the error echoes the request.
CID = "cid-MARK1"
RID = "rid-MARK2"
MARKERS = [CID, RID, "MARK"]


def base(**over):
    rec = {"customer_id": CID}
    rec.update(over)
    return rec


ABSENT = object()  # drop the key


def rec(**over):
    r = base(**over)
    return {k: v for k, v in r.items() if v is not ABSENT}


# name -> (records for REST / in-process, in-process-only frame builder or None, note)
CASES = [
    ("baseline (all valid)", [rec(request_id=RID, TotalCharges=29.85, dry_run=True, tenure=3)]),
    ("request_id null", [rec(request_id=None)]),
    ("request_id null + other row 'rid-MARK2'", [rec(request_id=None), rec(request_id=RID)]),
    ("request_id int 7", [rec(request_id=7)]),
    ("customer_id int 7", [{"customer_id": 7}]),
    ("TotalCharges \"\"", [rec(TotalCharges="")]),
    ("TotalCharges \" \"", [rec(TotalCharges=" ")]),
    ("TotalCharges \"29.85\"", [rec(TotalCharges="29.85")]),
    ("TotalCharges null", [rec(TotalCharges=None)]),
    ("dry_run \"false\"", [rec(dry_run="false")]),
    ("dry_run null", [rec(dry_run=None)]),
    ("dry_run absent in row 2 (row 1 true)", [rec(dry_run=True), rec()]),
    ("dry_run absent (single row)", [rec()]),
    ("tenure null", [rec(tenure=None)]),
    ("customer_id absent (column missing)", [{"request_id": RID}]),
    ("request_id datetime", "DATETIME"),
    ("request_id all-NaN float column (in-process only)", "NANCOL"),
]

DATETIME_VALUE = "2026-11-25T10:00:00"


def frame_for(records):
    if records == "DATETIME":
        return pd.DataFrame({"customer_id": [CID], "request_id": [pd.Timestamp(DATETIME_VALUE)]})
    if records == "NANCOL":
        return pd.DataFrame({"customer_id": [CID], "request_id": [float("nan")]})
    return pd.DataFrame.from_records(records)


def json_records_for(records):
    if records == "DATETIME":  # JSON has no datetime: send the ISO text
        return [{"customer_id": CID, "request_id": DATETIME_VALUE}]
    if records == "NANCOL":  # in-process only
        return []
    return records


def echoed(text: str, records) -> list[str]:
    """Request values found in an error text (markers, and the offending non-trivial values)."""
    found = [m for m in (CID, RID) if m in text]
    if not found and "MARK" in text:
        found.append("MARK")
    recs = json_records_for(records)
    for r in recs:
        for k, v in r.items():
            if isinstance(v, str) and v.strip() == "" and (f"'{v}'" in text or f'"{v}"' in text):
                found.append(f"{k}={v!r} (quoted)")
            if isinstance(v, str) and v.strip() and v not in (CID, RID) and v in text:
                found.append(f"{k}={v!r}")
    if "{'customer_id'" in text or '{"customer_id"' in text or "customer_id  " in text:
        found.append("whole request/frame")
    return sorted(set(found))


# ----------------------------------------------------------------------------------------- model
MODEL_CODE = '''
import json
import mlflow
import numpy as np
import pandas as pd


def _show(v):
    return f"{v!r}:{type(v).__name__}"


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if isinstance(model_input, pd.DataFrame):
            df = model_input
        elif isinstance(model_input, dict):
            df = pd.DataFrame({k: list(np.atleast_1d(v)) for k, v in model_input.items()})
        else:
            df = pd.DataFrame(model_input)
        out = []
        for i in range(len(df)):
            row = {c: f"{_show(df[c].iloc[i])}[{df[c].dtype}]" for c in df.columns}
            row["_input_type"] = type(model_input).__name__
            out.append(json.dumps(row, sort_keys=True))
        return pd.DataFrame({"received": out})


mlflow.models.set_model(Echo())
'''


def log_model(tmp):
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, DataType, Schema

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # file: store is in maintenance mode in 3.x
    os.environ["MLFLOW_TRACKING_URI"] = "file:" + os.path.join(tmp, "mlruns")
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    signature = ModelSignature(
        inputs=Schema([
            ColSpec(DataType.string, "customer_id", required=True),
            ColSpec(DataType.string, "request_id", required=False),
            ColSpec(DataType.double, "TotalCharges", required=False),
            ColSpec(DataType.boolean, "dry_run", required=False),
            ColSpec(DataType.long, "tenure", required=False),
        ]),
        outputs=Schema([ColSpec(DataType.string, "received")]),
    )
    code = os.path.join(tmp, "echo_model.py")
    with open(code, "w") as f:
        f.write(MODEL_CODE)
    mlflow.set_experiment("probe")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="echo", python_model=code, signature=signature, pip_requirements=["mlflow"]
        )
    return info.model_uri, signature


def short(text, n=300):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n] + "..."


def received_summary(rows):
    """Compact: for each row, the fields (other than customer_id when it is the marker)."""
    parts = []
    for row in rows:
        d = json.loads(row) if isinstance(row, str) else row
        d.pop("_input_type", None)
        parts.append("{" + ", ".join(f"{k}={v}" for k, v in sorted(d.items())) + "}")
    return "OK received " + " ; ".join(parts)


# ------------------------------------------------------------------------------------ in-process
def run_in_process(uri):
    import mlflow

    model = mlflow.pyfunc.load_model(uri)
    results = []
    for name, records in CASES:
        df = frame_for(records)
        try:
            out = model.predict(df)
            rows = list(out["received"]) if isinstance(out, pd.DataFrame) else list(out)
            results.append((name, "in-process", received_summary(rows), [], ""))
        except Exception as e:  # noqa: BLE001
            msg = f"{type(e).__name__}: {e}"
            results.append((name, "in-process", "ERROR " + short(msg), echoed(str(e), records), msg))
    return results


# ------------------------------------------------------------------------------------------ REST
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, body):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - http://127.0.0.1 only
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def run_rest(uri, tmp):
    port = free_port()
    log = open(os.path.join(tmp, "serve.log"), "w")
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    proc = subprocess.Popen(
        [mlflow_cli, "models", "serve", "-m", uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # the server execs `uvicorn` from PATH: put this venv's bin first
        env={**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]},
    )
    results = []
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError("server exited: " + open(log.name).read()[-2000:])
            with contextlib.suppress(OSError):  # not up yet
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        break
            if time.time() > deadline:
                raise RuntimeError("server did not answer /ping: " + open(log.name).read()[-2000:])
            time.sleep(1)
        for name, records in CASES:
            recs = json_records_for(records)
            if not recs:
                continue
            for fmt in ("dataframe_records", "inputs", "instances"):
                status, body = post(port, {fmt: recs})
                if status == 200:
                    try:
                        preds = json.loads(body)["predictions"]
                        rows = [p["received"] if isinstance(p, dict) else p for p in preds]
                        results.append((name, fmt, "200 " + received_summary(rows), [], ""))
                    except Exception:  # noqa: BLE001
                        results.append((name, fmt, "200 (unparsed) " + short(body), [], body))
                else:
                    results.append((name, fmt, f"{status} {short(body)}", echoed(body, records), body))
    finally:
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import mlflow
    import numpy as np

    tmp = tempfile.mkdtemp(prefix="probe-run-", dir=os.path.dirname(os.path.abspath(__file__)))
    uri, signature = log_model(tmp)
    results = run_in_process(uri) + run_rest(uri, tmp)
    header = (f"mlflow {mlflow.__version__} | pandas {pd.__version__} | numpy {np.__version__} | "
              f"python {sys.version.split()[0]}\nsignature inputs: {signature.inputs.to_json()}\n"
              f"markers: customer_id={CID!r} request_id={RID!r}\n")
    lines = [header, "case | format | result | request values echoed in error"]
    for name, fmt, res, echo, _ in results:
        lines.append(f"{name} | {fmt} | {res} | {', '.join(echo) if echo else '-'}")
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"mlflow": mlflow.__version__, "results": [
            {"case": n, "format": fm, "result": r, "echoed": e, "full": full}
            for n, fm, r, e, full in results]},
            f, indent=1)
    print(text)


if __name__ == "__main__":
    main()

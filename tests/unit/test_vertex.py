"""Vertex AI job specs, checked against google-cloud-aiplatform's own CustomJobSpec type (nothing is submitted)."""

from __future__ import annotations

import pytest
import yaml
from google.cloud.aiplatform_v1.types import CustomJobSpec
from google.protobuf.json_format import ParseDict

from retention.cli import main
from retention.cloud.vertex import (
    CPU_MACHINE,
    DEPENDS_ON,
    GPU_ACCELERATOR,
    GPU_MACHINE,
    GPU_STEPS,
    STEPS,
    JobOptions,
    VertexError,
    as_proto,
    job_spec,
    pipeline_waves,
    to_gcloud_yaml,
)

OPTS = JobOptions(image_uri="europe-west4-docker.pkg.dev/proj/retention/retention:abc",
                  tracking_uri="https://mlflow.example.org", bucket="proj-retention")


@pytest.mark.parametrize("step", STEPS)
def test_every_step_has_a_valid_spec_on_the_machine_of_the_job_table(step):
    spec = job_spec(step, OPTS)
    proto = as_proto(spec)  # the library's own type: a misspelt field would raise here
    pool = proto.worker_pool_specs[0]
    if step in GPU_STEPS:
        assert (pool.machine_spec.machine_type, pool.machine_spec.accelerator_type.name,
                pool.machine_spec.accelerator_count) == (GPU_MACHINE, GPU_ACCELERATOR, 1)
        assert pool.container_spec.image_uri.endswith(":abc-cuda")
    else:
        assert pool.machine_spec.machine_type == CPU_MACHINE and pool.machine_spec.accelerator_count == 0
        assert pool.container_spec.image_uri == OPTS.image_uri
    profile = "gpu" if step in GPU_STEPS else "cpu"
    assert list(pool.container_spec.command) + list(pool.container_spec.args) == [
        "mlflow", "run", ".", "-e", step, "--env-manager", "local", "--experiment-name", "retention",
        "-P", f"profile={profile}"]
    env = {e.name: e.value for e in pool.container_spec.env}
    assert env["MLFLOW_TRACKING_URI"] == "https://mlflow.example.org"
    assert env["RETENTION_PROCESSED_DIR"] == "/gcs/proj-retention/retention/processed"
    assert proto.base_output_directory.output_uri_prefix == f"gs://proj-retention/vertex/{step}"


def test_gpu_and_cpu_can_be_forced_and_params_are_passed():
    pool = as_proto(job_spec("train_policy", OPTS, gpu=True, params={"data_run_id": "abc"})).worker_pool_specs[0]
    assert pool.machine_spec.machine_type == GPU_MACHINE and list(pool.container_spec.args)[-2:] == [
        "-P", "data_run_id=abc"]
    assert as_proto(job_spec("sft", OPTS, gpu=False)).worker_pool_specs[0].machine_spec.machine_type == CPU_MACHINE


def test_a_misspelt_field_or_unknown_accelerator_fails_validation():
    spec = job_spec("sft", OPTS)
    spec["worker_pool_specs"][0]["machine_spec"]["machine_typ"] = spec["worker_pool_specs"][0]["machine_spec"].pop(
        "machine_type")
    with pytest.raises(VertexError, match="machine_typ"):
        as_proto(spec)
    spec = job_spec("sft", OPTS)
    spec["worker_pool_specs"][0]["machine_spec"]["accelerator_type"] = "NVIDIA_L5"
    with pytest.raises(VertexError, match="NVIDIA_L5"):
        as_proto(spec)
    with pytest.raises(VertexError, match="workerpoolspecs|worker_pool_spec"):
        as_proto({"worker_pool_spec": []})


def test_gcloud_yaml_is_the_camel_case_custom_job_spec():
    text = to_gcloud_yaml(job_spec("ppo_text", OPTS))
    doc = yaml.safe_load(text)
    assert doc["workerPoolSpecs"][0]["machineSpec"] == {"machineType": GPU_MACHINE, "acceleratorType": GPU_ACCELERATOR,
                                                        "acceleratorCount": 1}
    assert doc["workerPoolSpecs"][0]["containerSpec"]["command"] == ["mlflow"]
    # the YAML parses back into the same proto with the strict JSON parser (unknown fields are errors)
    back = ParseDict(doc, CustomJobSpec.pb(CustomJobSpec()))
    assert back == CustomJobSpec.pb(as_proto(job_spec("ppo_text", OPTS)))


@pytest.mark.parametrize(("change", "needle"), [
    ({"tracking_uri": "sqlite:///mlflow.db"}, "http(s)://"),
    ({"image_uri": ""}, "--image"),
    ({"bucket": "gs://x"}, "--bucket"),
])
def test_bad_options_are_named(change, needle):
    with pytest.raises(VertexError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        job_spec("data", JobOptions(**{**OPTS.__dict__, **change}))
    with pytest.raises(VertexError, match="unknown step"):
        job_spec("train", OPTS)


def test_pipeline_waves_respect_every_dependency():
    waves = pipeline_waves()
    seen: set[str] = set()
    for wave in waves:
        for step in wave:
            assert set(DEPENDS_ON[step]) <= seen, (step, DEPENDS_ON[step], seen)
        seen |= set(wave)
    assert seen == set(STEPS) - {"drift"}
    assert not set(GPU_STEPS) & {s for w in pipeline_waves(only_cpu=True) for s in w}


def test_cli_dry_run_writes_a_spec_per_step(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RETENTION_IMAGE", OPTS.image_uri)
    monkeypatch.setenv("RETENTION_BUCKET", OPTS.bucket)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", OPTS.tracking_uri)
    assert main(["vertex", "submit", "sft", "--dry-run", "--out", str(tmp_path / "one")]) == 0
    assert "gcloud ai custom-jobs create" in capsys.readouterr().out
    assert yaml.safe_load((tmp_path / "one" / "sft.yaml").read_text())["workerPoolSpecs"][0]["machineSpec"][
        "acceleratorType"] == GPU_ACCELERATOR
    assert main(["vertex", "pipeline", "--dry-run", "--out", str(tmp_path / "all")]) == 0
    assert sorted(p.stem for p in (tmp_path / "all").glob("*.yaml")) == sorted(set(STEPS) - {"drift"})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    assert main(["vertex", "submit", "data", "--dry-run"]) == 8
    err = capsys.readouterr().err
    assert "--tracking-uri" in err and "Traceback" not in err


def test_the_sdk_job_that_would_be_submitted_carries_the_same_spec():
    """aiplatform.CustomJob built offline (anonymous credentials): its job_spec is our validated spec."""
    from google.auth.credentials import AnonymousCredentials

    from retention.cloud.vertex import custom_job

    spec = job_spec("train_reward", OPTS)
    job = custom_job("train_reward", spec, "proj", "europe-west4", OPTS.bucket, credentials=AnonymousCredentials())
    assert job.job_spec.worker_pool_specs == as_proto(spec).worker_pool_specs
    assert job.job_spec.base_output_directory.output_uri_prefix == "gs://proj-retention/vertex/train_reward"
    with pytest.raises(VertexError, match="--project"):
        custom_job("data", job_spec("data", OPTS), "", "europe-west4", OPTS.bucket)

"""Vertex AI custom jobs: one MLflow Project entry point per job, logging to the tracking server.

MLflow Projects has no Vertex backend, so each job's container runs
``mlflow run . -e STEP --env-manager local -P profile=...`` with ``MLFLOW_TRACKING_URI`` pointing at
the tracking server (which proxies artifacts to GCS: jobs need no bucket credentials for MLflow).
Steps hand data over through the project bucket, which Vertex mounts at ``/gcs/BUCKET`` (Cloud
Storage FUSE): ``RETENTION_PROCESSED_DIR`` and ``RETENTION_DATA_MIRROR`` point there.

The machine table follows the design: CPU steps on ``n1-standard-4``; ``sft``, ``train_reward``
and ``ppo_text`` on ``g2-standard-4`` with one ``NVIDIA_L4`` (the CUDA image).

A spec is built as a plain snake_case dict (what ``aiplatform.CustomJob(worker_pool_specs=...)``
takes) and checked by constructing the library's own ``CustomJobSpec`` proto from it, so a
misspelt field fails here, not in the cloud. :func:`to_gcloud_yaml` writes the camelCase form that
``gcloud ai custom-jobs create --config`` reads.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retention.errors import RetentionError

CPU_MACHINE = "n1-standard-4"
GPU_MACHINE = "g2-standard-4"
GPU_ACCELERATOR = "NVIDIA_L4"
GPU_STEPS = ("sft", "train_reward", "ppo_text")
CPU_STEPS = ("data", "train_risk", "train_accept", "promote", "train_policy", "evaluate_policy", "bundle", "drift")
STEPS = CPU_STEPS[:-2] + GPU_STEPS + CPU_STEPS[-2:]
# The DAG `retention vertex pipeline` submits, wave by wave (each wave's jobs run in parallel):
# data; risk and accept; promote, sft; policy, reward model; evaluate policy, PPO-text; bundle.
PIPELINE: tuple[tuple[str, ...], ...] = (
    ("data",),
    ("train_risk", "train_accept", "sft"),
    ("promote", "train_reward"),
    ("train_policy", "ppo_text"),
    ("evaluate_policy",),
    ("bundle",),
)
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "data": (), "train_risk": ("data",), "train_accept": ("data",), "promote": ("train_risk", "train_accept"),
    "train_policy": ("promote",), "evaluate_policy": ("train_policy",), "sft": ("data",),
    "train_reward": ("sft",), "ppo_text": ("sft", "train_reward"), "bundle": ("evaluate_policy", "ppo_text"),
    "drift": ("bundle",),
}
TERMINAL_STATES = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")


class VertexError(RetentionError):
    """A Vertex AI job cannot be built or submitted as asked (the message names the option to fix)."""

    exit_code = 8


@dataclass(frozen=True)
class JobOptions:
    """Everything a job spec needs besides the step.

    Attributes
    ----------
    image_uri:
        The CPU image (``Dockerfile``), e.g. ``europe-west4-docker.pkg.dev/PROJECT/retention/retention:TAG``.
    gpu_image_uri:
        The CUDA image (``Dockerfile.cuda``) for GPU jobs; defaults to ``image_uri`` + ``-cuda``.
    tracking_uri:
        The tracking server every job logs to (``http(s)://``; a local sqlite path is useless in the cloud).
    bucket:
        The project bucket (no ``gs://``); Vertex mounts it at ``/gcs/BUCKET`` for the data hand-over.
    profile:
        Config profile; default ``gpu`` for GPU jobs and ``cpu`` otherwise.
    experiment:
        MLflow experiment name.
    service_account:
        Service account the job runs as (needs read/write on the bucket); empty: Vertex's default.
    region:
        Vertex region (``gcloud ai custom-jobs create --region``).
    boot_disk_gb:
        Boot disk size (the images are several GB).
    extra_env:
        More environment variables for the container.
    """

    image_uri: str
    tracking_uri: str
    bucket: str
    gpu_image_uri: str = ""
    profile: str = ""
    experiment: str = "retention"
    service_account: str = ""
    region: str = "europe-west4"
    boot_disk_gb: int = 100
    extra_env: dict[str, str] = field(default_factory=dict)


def machine_for(step: str, gpu: bool | None = None) -> dict[str, Any]:
    """The ``machine_spec`` of ``step``: the design's table, or forced by ``gpu`` True/False."""
    use_gpu = step in GPU_STEPS if gpu is None else gpu
    if use_gpu:
        return {"machine_type": GPU_MACHINE, "accelerator_type": GPU_ACCELERATOR, "accelerator_count": 1}
    return {"machine_type": CPU_MACHINE}


def _check(step: str, opts: JobOptions) -> None:
    if step not in STEPS:
        raise VertexError(f"unknown step {step!r}: choose one of {', '.join(STEPS)}")
    if not opts.image_uri:
        raise VertexError("no container image: pass --image (or set RETENTION_IMAGE), e.g. "
                          "REGION-docker.pkg.dev/PROJECT/retention/retention:TAG (build it from the Dockerfile)")
    if not re.match(r"^https?://", opts.tracking_uri or ""):
        raise VertexError(f"--tracking-uri must be the tracking server's http(s):// address (got "
                          f"{opts.tracking_uri!r}); a job in the cloud cannot reach a local sqlite file")
    if not opts.bucket or opts.bucket.startswith("gs://") or "/" in opts.bucket:
        raise VertexError(f"--bucket must be a bucket name without gs:// or a path (got {opts.bucket!r})")


def job_spec(step: str, opts: JobOptions, gpu: bool | None = None,
             params: dict[str, str] | None = None) -> dict[str, Any]:
    """A CustomJobSpec (snake_case, as ``aiplatform.CustomJob(worker_pool_specs=...)`` takes) for ``step``."""
    _check(step, opts)
    machine = machine_for(step, gpu)
    on_gpu = "accelerator_type" in machine
    profile = opts.profile or ("gpu" if on_gpu else "cpu")
    image = (opts.gpu_image_uri or f"{opts.image_uri}-cuda") if on_gpu else opts.image_uri
    args = ["run", ".", "-e", step, "--env-manager", "local", "--experiment-name", opts.experiment,
            "-P", f"profile={profile}"]
    for key, value in (params or {}).items():
        args += ["-P", f"{key}={value}"]
    shared = f"/gcs/{opts.bucket}/retention"
    env = {"MLFLOW_TRACKING_URI": opts.tracking_uri, "MLFLOW_EXPERIMENT_NAME": opts.experiment,
           "RETENTION_PROCESSED_DIR": f"{shared}/processed", "RETENTION_DATA_MIRROR": f"{shared}/raw",
           "RETENTION_PROFILE": profile, **opts.extra_env}
    spec: dict[str, Any] = {
        "worker_pool_specs": [{
            "machine_spec": machine,
            "replica_count": 1,
            "container_spec": {"image_uri": image, "command": ["mlflow"], "args": args,
                               "env": [{"name": k, "value": v} for k, v in env.items()]},
            "disk_spec": {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": opts.boot_disk_gb},
        }],
        "base_output_directory": {"output_uri_prefix": f"gs://{opts.bucket}/vertex/{step}"},
        "scheduling": {"timeout": "86400s", "restart_job_on_worker_restart": False},
    }
    if opts.service_account:
        spec["service_account"] = opts.service_account
    return spec


def as_proto(spec: dict[str, Any]):
    """The library's own ``CustomJobSpec`` built from ``spec``: an unknown or misspelt field raises."""
    from google.cloud.aiplatform_v1.types import CustomJobSpec

    try:
        return CustomJobSpec(spec)
    except (ValueError, TypeError, KeyError) as exc:
        raise VertexError(f"invalid CustomJobSpec: {exc}") from exc


def to_gcloud_yaml(spec: dict[str, Any]) -> str:
    """The camelCase YAML that ``gcloud ai custom-jobs create --config`` reads, via the proto (validated)."""
    import yaml
    from google.cloud.aiplatform_v1.types import CustomJobSpec
    from google.protobuf.json_format import MessageToDict

    message = CustomJobSpec.pb(as_proto(spec))
    return yaml.safe_dump(MessageToDict(message), sort_keys=False)


def display_name(step: str) -> str:
    return f"retention-{step.replace('_', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_dry_run(step: str, spec: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{step}.yaml"
    path.write_text(to_gcloud_yaml(spec))
    return path


def custom_job(step: str, spec: dict[str, Any], project: str, region: str, bucket: str, credentials=None):
    """The ``aiplatform.CustomJob`` that :func:`submit` sends (built offline; nothing is contacted)."""
    if not project:
        raise VertexError("no Google Cloud project: pass --project or set GOOGLE_CLOUD_PROJECT")
    from google.cloud import aiplatform

    as_proto(spec)
    return aiplatform.CustomJob(display_name=display_name(step), worker_pool_specs=spec["worker_pool_specs"],
                                base_output_dir=spec["base_output_directory"]["output_uri_prefix"],
                                project=project, location=region, staging_bucket=f"gs://{bucket}",
                                credentials=credentials)


def submit(step: str, spec: dict[str, Any], project: str, region: str, bucket: str,
           poll_s: float = 30.0, sync: bool = True, log=print):
    """Submit ``spec`` with google-cloud-aiplatform and follow its state until it ends (when ``sync``).

    Needs Application Default Credentials (``gcloud auth application-default login``) and a project.
    Returns the ``CustomJob``; raises :class:`VertexError` when it does not succeed.
    """
    job = custom_job(step, spec, project, region, bucket)
    scheduling = spec.get("scheduling", {})
    job.submit(service_account=spec.get("service_account") or None,
               timeout=int(str(scheduling.get("timeout", "86400s")).rstrip("s")),
               restart_job_on_worker_restart=bool(scheduling.get("restart_job_on_worker_restart", False)))
    log(f"vertex: {step} submitted as {job.resource_name}")
    if not sync:
        return job
    state = None
    while True:
        current = job.state.name  # each read fetches the job again
        if current != state:
            log(f"vertex: {step} {current}")
            state = current
        if current in TERMINAL_STATES:
            break
        time.sleep(poll_s)
    if state != "JOB_STATE_SUCCEEDED":
        raise VertexError(f"Vertex job for {step} ended in {state}: see {job.resource_name} in the console")
    return job


def pipeline_waves(only_cpu: bool = False) -> list[tuple[str, ...]]:
    """The pipeline's waves; every step's dependencies are in earlier waves (checked in tests)."""
    waves = [tuple(s for s in w if not (only_cpu and s in GPU_STEPS)) for w in PIPELINE]
    return [w for w in waves if w]


def default_options(**overrides: Any) -> JobOptions:
    """Options from the environment (RETENTION_IMAGE, RETENTION_GPU_IMAGE, MLFLOW_TRACKING_URI, RETENTION_BUCKET)."""
    base = {"image_uri": os.environ.get("RETENTION_IMAGE", ""),
            "gpu_image_uri": os.environ.get("RETENTION_GPU_IMAGE", ""),
            "tracking_uri": os.environ.get("MLFLOW_TRACKING_URI", ""),
            "bucket": os.environ.get("RETENTION_BUCKET", ""),
            "region": os.environ.get("GOOGLE_CLOUD_REGION", "europe-west4"),
            "service_account": os.environ.get("RETENTION_SERVICE_ACCOUNT", ""),
            "experiment": os.environ.get("MLFLOW_EXPERIMENT_NAME", "retention")}
    base.update({k: v for k, v in overrides.items() if v not in (None, "")})
    return JobOptions(**base)

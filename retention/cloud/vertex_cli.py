"""``retention vertex submit STEP [--gpu] [--dry-run]`` and ``retention vertex pipeline``."""

from __future__ import annotations

import argparse
from pathlib import Path


def _job_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", default=None, help="CPU image URI (default: $RETENTION_IMAGE)")
    p.add_argument("--gpu-image", default=None,
                   help="CUDA image URI for GPU jobs (default: $RETENTION_GPU_IMAGE, else IMAGE-cuda)")
    p.add_argument("--tracking-uri", default=None,
                   help="tracking server, http(s):// (default: $MLFLOW_TRACKING_URI)")
    p.add_argument("--bucket", default=None, help="project bucket name, no gs:// (default: $RETENTION_BUCKET)")
    p.add_argument("--profile", default=None, choices=("smoke", "cpu", "gpu"),
                   help="config profile (default: gpu on GPU machines, cpu otherwise)")
    p.add_argument("--project", default=None, help="Google Cloud project (default: $GOOGLE_CLOUD_PROJECT)")
    p.add_argument("--region", default=None, help="Vertex AI region (default: $GOOGLE_CLOUD_REGION or europe-west4)")
    p.add_argument("--service-account", default=None, help="service account the jobs run as")
    p.add_argument("--dry-run", action="store_true",
                   help="write the specs as YAML for `gcloud ai custom-jobs create --config` and submit nothing")
    p.add_argument("--out", default="vertex-jobs", help="folder for the --dry-run YAML files (default vertex-jobs)")


def add_vertex_commands(p: argparse.ArgumentParser) -> None:
    from retention.cloud.vertex import STEPS

    sub = p.add_subparsers(dest="vertex_command", required=True, metavar="ACTION")
    s = sub.add_parser("submit", help="run one step as a Vertex AI custom job",
                       description="build the CustomJob spec that runs `mlflow run . -e STEP --env-manager local` "
                       "and submit it (or write it with --dry-run)")
    s.add_argument("step", choices=STEPS)
    hw = s.add_mutually_exclusive_group()
    hw.add_argument("--gpu", dest="gpu", action="store_true", default=None,
                    help="g2-standard-4 + 1 NVIDIA_L4 (default for sft, train_reward, ppo_text)")
    hw.add_argument("--cpu", dest="gpu", action="store_false", help="n1-standard-4 (default for the other steps)")
    s.add_argument("-P", dest="params", action="append", default=[], metavar="KEY=VALUE",
                   help="an MLproject parameter of the step (repeatable)")
    _job_options(s)
    s.set_defaults(vertex_func=cmd_submit)

    pl = sub.add_parser("pipeline", help="submit the whole DAG in dependency order",
                        description="data; risk, accept and sft; promote and the reward model; policy and PPO-text; "
                        "evaluate_policy; bundle. Each wave waits for the one before it.")
    pl.add_argument("--cpu-only", action="store_true", help="leave out the GPU steps (bundle then sends templates)")
    _job_options(pl)
    pl.set_defaults(vertex_func=cmd_pipeline)


def _options(args: argparse.Namespace):
    from retention.cloud.vertex import default_options

    return default_options(image_uri=args.image, gpu_image_uri=args.gpu_image, tracking_uri=args.tracking_uri,
                           bucket=args.bucket, profile=args.profile, region=args.region,
                           service_account=args.service_account)


def _params(pairs: list[str]) -> dict[str, str]:
    from retention.cloud.vertex import VertexError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise VertexError(f"-P expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def _project(args: argparse.Namespace) -> str:
    import os

    return args.project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")


def cmd_submit(args: argparse.Namespace) -> None:
    from retention.cloud.vertex import job_spec, submit, write_dry_run

    opts = _options(args)
    spec = job_spec(args.step, opts, args.gpu, _params(args.params))
    if args.dry_run:
        path = write_dry_run(args.step, spec, Path(args.out))
        print(f"vertex: wrote {path} (gcloud ai custom-jobs create --region={opts.region} "
              f"--display-name=retention-{args.step.replace('_', '-')} --config={path})")
        return
    submit(args.step, spec, _project(args), opts.region, opts.bucket)


def cmd_pipeline(args: argparse.Namespace) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from retention.cloud.vertex import job_spec, pipeline_waves, submit, write_dry_run

    opts = _options(args)
    waves = pipeline_waves(args.cpu_only)
    specs = {step: job_spec(step, opts) for wave in waves for step in wave}
    if args.dry_run:
        for i, wave in enumerate(waves, 1):
            for step in wave:
                print(f"vertex: wave {i}: wrote {write_dry_run(step, specs[step], Path(args.out))}")
        return
    project = _project(args)
    for i, wave in enumerate(waves, 1):
        print(f"vertex: wave {i}/{len(waves)}: {', '.join(wave)}")
        with ThreadPoolExecutor(max_workers=len(wave)) as pool:
            jobs = [pool.submit(submit, step, specs[step], project, opts.region, opts.bucket) for step in wave]
            for job in jobs:
                job.result()  # a failed job stops the pipeline before the next wave

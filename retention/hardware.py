"""The machine a language model trains or serves on, and the one dtype choice both use.

CPUs of this project's machines differ. Some have bf16 matrix units (AMX, AVX512-BF16), where a
bfloat16 matmul is several times faster than a float32 one. Others (AVX-512 or AVX2 without bf16
units) emulate bfloat16 and run it about 4x *slower* than float32. Neither oneDNN's
``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` (True on both kinds) nor the CPU flags alone are
a reliable guide, so :func:`measured_dtype` times one small matmul in both dtypes, once per
process, and :func:`pick_dtype` decides from those timings:

* on CUDA: bfloat16 where the GPU supports it (Ampere or newer), else float32;
* on CPU: bfloat16 only when it is at least :data:`BF16_MIN_SPEEDUP` times faster than float32.

:func:`resolve_dtype` maps a setting (``auto``, ``bfloat16``, ``float32``) to a dtype; training
(``messaging.train_dtype``) and serving (``serving.generation_dtype``) both call it.
:func:`describe` returns a flat dict of facts (CPU model and flags, torch's CPU capability,
threads, the dtype chosen, the matmul timings) that every run training or serving an LM logs.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from pathlib import Path

import torch

from retention.errors import ConfigError

DTYPE_CHOICES = ("auto", "bfloat16", "float32")
BF16_MIN_SPEEDUP = 1.3
"""On CPU, bfloat16 is chosen only when its matmul is at least this many times faster than float32."""
PROBE_SHAPE = (512, 576, 1536)
"""(m, k, n) of the timed matmul: a batch of hidden states (SmolLM2: 576) times an MLP weight (1536)."""
PROBE_REPS = 3
RELEVANT_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")
"""CPU flags that decide how fast bfloat16 (and int8) matmuls run, as ``/proc/cpuinfo`` names them."""


def pick_dtype(cuda: bool, fp32_seconds: float | None = None, bf16_seconds: float | None = None,
               min_speedup: float = BF16_MIN_SPEEDUP) -> torch.dtype:
    """The compute dtype for a model, decided from measurements.

    Parameters
    ----------
    cuda:
        Whether the model runs on a CUDA GPU with bfloat16 support (:func:`cuda_bf16`); then
        bfloat16, and the timings are not needed.
    fp32_seconds, bf16_seconds:
        Seconds of the same CPU matmul in float32 and in bfloat16 (required on CPU).
    min_speedup:
        How many times faster bfloat16 must be on CPU to be chosen. A margin above 1, so that
        timing noise on a CPU without bf16 units never picks bfloat16's lower precision for nothing.

    Returns
    -------
    torch.dtype
        ``torch.bfloat16`` or ``torch.float32``.
    """
    if cuda:
        return torch.bfloat16
    if fp32_seconds is None or bf16_seconds is None or fp32_seconds <= 0 or bf16_seconds <= 0:
        raise ValueError(f"matmul timings must be positive, got fp32={fp32_seconds!r}, bf16={bf16_seconds!r}")
    return torch.bfloat16 if fp32_seconds / bf16_seconds >= min_speedup else torch.float32


def time_matmul(dtype: torch.dtype, shape: tuple[int, int, int] = PROBE_SHAPE, reps: int = PROBE_REPS) -> float:
    """Best-of-``reps`` seconds of one ``(m, k) @ (k, n)`` CPU matmul in ``dtype``, after a warm-up call.

    The best rather than the mean, so that another process briefly taking a core does not count.
    """
    m, k, n = shape
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(dtype)
    b = torch.randn(k, n, generator=gen).to(dtype)
    best = float("inf")
    with torch.inference_mode():
        torch.matmul(a, b)  # warm-up: oneDNN builds its kernel on the first call
        for _ in range(reps):
            start = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - start)
    return best


@functools.lru_cache(maxsize=1)
def matmul_seconds() -> dict[str, float]:
    """Seconds of the probe matmul in ``float32`` and ``bfloat16`` on this CPU, measured once per process.

    About 0.3 s in all on a CPU without bf16 units (2 threads, warm-ups included), less with them.
    """
    return {"float32": time_matmul(torch.float32), "bfloat16": time_matmul(torch.bfloat16)}


def cuda_bf16() -> bool:
    """Whether a CUDA GPU with bfloat16 support is available."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def measured_dtype() -> torch.dtype:
    """The fast dtype of this machine: :func:`pick_dtype` on CUDA, or on CPU from :func:`matmul_seconds`."""
    if cuda_bf16():
        return pick_dtype(cuda=True)
    if torch.cuda.is_available():  # a GPU older than Ampere: no bfloat16 units
        return torch.float32
    timings = matmul_seconds()
    return pick_dtype(False, timings["float32"], timings["bfloat16"])


def resolve_dtype(requested: str, setting: str = "serving.generation_dtype") -> torch.dtype:
    """The dtype for a setting's value: ``auto`` (:func:`measured_dtype`), ``bfloat16`` or ``float32``.

    Parameters
    ----------
    requested:
        The setting's value.
    setting:
        The setting's name, for the error message (``serving.generation_dtype``, ``messaging.train_dtype``).

    Raises
    ------
    ConfigError
        For any other value; the message names the setting and the allowed values.
    """
    if requested not in DTYPE_CHOICES:
        raise ConfigError(f"{setting} must be one of {', '.join(DTYPE_CHOICES)}, got {requested!r}: "
                          f"set {setting}=auto to let the machine decide.")
    if requested == "auto":
        return measured_dtype()
    return getattr(torch, requested)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask; the machine's count where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_threads(requested: int, setting: str = "messaging.torch_threads") -> int:
    """Torch threads for a setting's value: ``0`` = every core the process may use (:func:`available_cores`)."""
    if requested < 0:
        raise ConfigError(f"{setting} must be 0 (every available core) or a positive thread count, got {requested}.")
    return requested or available_cores()


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """The model name and the flags of the first processor in ``/proc/cpuinfo`` text."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if model and flags:
            break
    return model, flags


def cpu_info() -> dict[str, object]:
    """What decides CPU matmul speed here.

    Returns
    -------
    dict
        ``model`` (``/proc/cpuinfo``'s model name, else :func:`platform.processor`), ``flags``
        (those of :data:`RELEVANT_FLAGS` the CPU has, sorted), ``capability`` (torch's
        ``torch.backends.cpu.get_cpu_capability()``, e.g. ``AVX512``), ``threads`` (torch's
        intra-op threads now) and ``cores`` (:func:`available_cores`).
    """
    try:
        model, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        model, flags = "", set()
    return {
        "model": model or platform.processor() or platform.machine(),
        "flags": sorted(flags & set(RELEVANT_FLAGS)),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "cores": available_cores(),
    }


def describe(requested: str = "auto", setting: str = "serving.generation_dtype",
             threads: int | None = None) -> dict[str, str]:
    """Flat ``hardware.*`` facts for an MLflow run that trains or serves a language model.

    Both the ``sft`` and the ``bundle`` step log them as run tags.

    Parameters
    ----------
    requested, setting:
        The dtype setting's value and name, resolved with :func:`resolve_dtype`.
    threads:
        Torch threads the run uses; default: torch's current intra-op thread count.

    Returns
    -------
    dict
        ``hardware.cpu_model``, ``hardware.flags`` (comma-separated, ``none`` if none),
        ``hardware.cpu_capability``, ``hardware.threads``, ``hardware.cores``, ``hardware.cuda``
        (the GPU's name or ``none``), ``hardware.dtype_setting``, ``hardware.dtype`` (the dtype
        used) and, on CPU, ``hardware.matmul_fp32_ms`` / ``hardware.matmul_bf16_ms`` (the probe).
    """
    info = cpu_info()
    dtype = resolve_dtype(requested, setting)
    facts = {
        "hardware.cpu_model": str(info["model"]),
        "hardware.flags": ",".join(info["flags"]) or "none",
        "hardware.cpu_capability": str(info["capability"]),
        "hardware.threads": str(info["threads"] if threads is None else threads),
        "hardware.cores": str(info["cores"]),
        "hardware.cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "hardware.dtype_setting": requested,
        "hardware.dtype": str(dtype).removeprefix("torch."),
    }
    if not torch.cuda.is_available():
        timings = matmul_seconds()
        facts["hardware.matmul_fp32_ms"] = f"{timings['float32'] * 1e3:.2f}"
        facts["hardware.matmul_bf16_ms"] = f"{timings['bfloat16'] * 1e3:.2f}"
    return facts

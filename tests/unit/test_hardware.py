"""The one dtype choice (both branches forced), its cache, the CPU facts and the logged description."""

from __future__ import annotations

import pytest
import torch

from retention import hardware
from retention.errors import ConfigError

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor @ 2.50GHz
flags\t\t: fpu sse avx2 avx512f avx512_vnni
\nprocessor\t: 1
model name\t: Intel(R) Xeon(R) Processor @ 2.50GHz
flags\t\t: fpu sse avx2 avx512f avx512_vnni
"""


@pytest.fixture
def on_cpu(monkeypatch):
    """No CUDA, whatever the machine running the tests has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def timings(fp32: float, bf16: float):
    return lambda: {"float32": fp32, "bfloat16": bf16}


@pytest.mark.parametrize("fp32, bf16, expected", [
    (0.0073, 0.0346, torch.float32),   # AVX-512 without bf16 units: bf16 4.7x slower (measured here)
    (0.0100, 0.0014, torch.bfloat16),  # AMX: bf16 ~7x faster
    (0.0100, 0.0080, torch.float32),   # only 1.25x faster: below the margin, keep float32's precision
    (0.0131, 0.0100, torch.bfloat16),  # just above the 1.3x margin
])
def test_pick_dtype_on_cpu_follows_the_timings(fp32, bf16, expected):
    assert hardware.pick_dtype(False, fp32, bf16) == expected


def test_pick_dtype_on_cuda_is_bfloat16_without_timings():
    assert hardware.pick_dtype(True) == torch.bfloat16
    assert hardware.pick_dtype(True, 0.001, 0.1) == torch.bfloat16


@pytest.mark.parametrize("fp32, bf16", [(None, None), (0.0, 0.01), (0.01, -1.0)])
def test_pick_dtype_on_cpu_needs_positive_timings(fp32, bf16):
    with pytest.raises(ValueError, match="timings"):
        hardware.pick_dtype(False, fp32, bf16)


def test_auto_on_a_cpu_without_bf16_units_is_float32(monkeypatch, on_cpu):
    monkeypatch.setattr(hardware, "matmul_seconds", timings(0.0073, 0.0346))
    assert hardware.resolve_dtype("auto") == torch.float32


def test_auto_on_an_amx_cpu_is_bfloat16(monkeypatch, on_cpu):
    monkeypatch.setattr(hardware, "matmul_seconds", timings(0.0100, 0.0014))
    assert hardware.resolve_dtype("auto") == torch.bfloat16


def test_auto_on_cuda_is_bfloat16_without_measuring(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    def no_timing():
        raise AssertionError("a CUDA machine must not time a CPU matmul")

    monkeypatch.setattr(hardware, "matmul_seconds", no_timing)
    assert hardware.resolve_dtype("auto") == torch.bfloat16


def test_auto_on_a_gpu_without_bf16_is_float32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert hardware.resolve_dtype("auto") == torch.float32


@pytest.mark.parametrize("requested, expected", [("bfloat16", torch.bfloat16), ("float32", torch.float32)])
def test_explicit_choices_win_over_the_measurement(monkeypatch, on_cpu, requested, expected):
    def no_timing():
        raise AssertionError("an explicit dtype must not be measured")

    monkeypatch.setattr(hardware, "matmul_seconds", no_timing)
    assert hardware.resolve_dtype(requested) == expected


@pytest.mark.parametrize("bad", ["fp8", "bf16", "float16", ""])
def test_other_values_are_an_error_naming_the_setting(bad):
    with pytest.raises(ConfigError, match="messaging.train_dtype must be one of auto, bfloat16, float32"):
        hardware.resolve_dtype(bad, "messaging.train_dtype")
    with pytest.raises(ConfigError, match="serving.generation_dtype"):
        hardware.resolve_dtype(bad)


def test_matmul_is_timed_once_per_process(monkeypatch):
    calls = []

    def fake_time(dtype, *args, **kwargs):
        calls.append(dtype)
        return 0.01 if dtype == torch.float32 else 0.04

    monkeypatch.setattr(hardware, "time_matmul", fake_time)
    hardware.matmul_seconds.cache_clear()
    try:
        first = hardware.matmul_seconds()
        assert hardware.matmul_seconds() == first == {"float32": 0.01, "bfloat16": 0.04}
        assert calls == [torch.float32, torch.bfloat16]
    finally:
        hardware.matmul_seconds.cache_clear()  # later tests measure the real CPU again


def test_time_matmul_is_quick_and_positive():
    seconds = hardware.time_matmul(torch.float32, shape=(64, 64, 64), reps=2)
    assert 0 < seconds < 1


def test_parse_cpuinfo_reads_the_first_processor():
    model, flags = hardware.parse_cpuinfo(CPUINFO)
    assert model == "Intel(R) Xeon(R) Processor @ 2.50GHz"
    assert {"avx2", "avx512f", "avx512_vnni"} <= flags and "avx512_bf16" not in flags
    assert hardware.parse_cpuinfo("") == ("", set())


def test_cpu_info_names_the_cpu_and_only_relevant_flags():
    info = hardware.cpu_info()
    assert info["model"] and set(info["flags"]) <= set(hardware.RELEVANT_FLAGS)
    assert info["threads"] == torch.get_num_threads() and info["cores"] >= 1
    assert isinstance(info["capability"], str)


@pytest.mark.parametrize("requested, expected", [(0, None), (1, 1), (3, 3)])
def test_threads_zero_means_every_available_core(requested, expected):
    assert hardware.resolve_threads(requested) == (expected or hardware.available_cores())


def test_negative_threads_name_the_setting():
    with pytest.raises(ConfigError, match="messaging.torch_threads"):
        hardware.resolve_threads(-1)


def test_describe_is_flat_strings_with_the_chosen_dtype(monkeypatch, on_cpu):
    monkeypatch.setattr(hardware, "matmul_seconds", timings(0.0073, 0.0346))
    facts = hardware.describe("auto", "messaging.train_dtype")
    assert facts["hardware.dtype"] == "float32" and facts["hardware.dtype_setting"] == "auto"
    assert facts["hardware.matmul_fp32_ms"] == "7.30" and facts["hardware.matmul_bf16_ms"] == "34.60"
    assert facts["hardware.cuda"] == "none" and facts["hardware.cpu_model"]
    assert {"hardware.flags", "hardware.cpu_capability", "hardware.threads"} <= set(facts)
    assert all(k.startswith("hardware.") and isinstance(v, str) for k, v in facts.items())
    assert hardware.describe("bfloat16")["hardware.dtype"] == "bfloat16"

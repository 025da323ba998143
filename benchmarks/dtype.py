"""Benchmark: which dtype this machine computes fastest in, as training and serving decide it.

Usage (no model or data needed; well under a second per shape):

    .venv/bin/python benchmarks/dtype.py [--shape 2048,576,1536] [--reps 5]

Prints the CPU model and the flags that matter (AMX, AVX512-BF16, AVX512-VNNI, ...), torch's CPU
capability, the threads, the probe matmul of `retention.hardware` in float32 and bfloat16 (and any
`--shape` asked for), and the dtype `auto` resolves to. oneDNN's own bf16 answer is printed too:
it says True on CPUs with and without bf16 units, which is why the choice is measured.
"""

from __future__ import annotations

import argparse

import torch

from retention import hardware


def _shape(text: str) -> tuple[int, int, int]:
    m, k, n = (int(x) for x in text.split(","))
    return m, k, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=_shape, action="append", default=[],
                    help="extra m,k,n matmul to time in both dtypes (repeatable)")
    ap.add_argument("--reps", type=int, default=hardware.PROBE_REPS, help="timed repetitions (best is kept)")
    args = ap.parse_args()

    info = hardware.cpu_info()
    print(f"CPU: {info['model']}")
    print(f"flags: {', '.join(info['flags']) or 'none'} (of {', '.join(hardware.RELEVANT_FLAGS)})")
    print(f"torch {torch.__version__}: CPU capability {info['capability']}, {info['threads']} threads, "
          f"{info['cores']} cores available; CUDA: {torch.cuda.is_available()}")
    print(f"oneDNN says bf16 is supported: {torch.ops.mkldnn._is_mkldnn_bf16_supported()} (not a speed test)")
    print()
    print("| matmul m x k x n | float32 ms | bfloat16 ms | float32 TFLOPS | bfloat16 TFLOPS | bf16 speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    for shape in [hardware.PROBE_SHAPE, *args.shape]:
        fp32 = hardware.time_matmul(torch.float32, shape, args.reps)
        bf16 = hardware.time_matmul(torch.bfloat16, shape, args.reps)
        flops = 2 * shape[0] * shape[1] * shape[2]
        label = " x ".join(map(str, shape)) + (" (the probe)" if shape == hardware.PROBE_SHAPE else "")
        print(f"| {label} | {fp32 * 1e3:.2f} | {bf16 * 1e3:.2f} | {flops / fp32 / 1e12:.3f} | "
              f"{flops / bf16 / 1e12:.3f} | {fp32 / bf16:.2f}x |")
    print()
    chosen = hardware.resolve_dtype("auto")
    print(f"auto -> {str(chosen).removeprefix('torch.')} (bfloat16 needs a >= {hardware.BF16_MIN_SPEEDUP}x "
          "speed-up on CPU, or CUDA)")


if __name__ == "__main__":
    main()

"""What a benchmark ran on: the CPU model, the flags that decide its speed, threads, limits.

Every benchmark prints :func:`describe` first, so that a figure in docs/benchmarks.md always
says which CPU it came from. ``ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`` (and
``--dtype float32``) emulate a CPU without AVX-512 and bfloat16 on one that has them.
"""

from __future__ import annotations

import os
import platform

import torch

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu() -> tuple[str, set[str]]:
    """The CPU's model name and its flags (Linux /proc/cpuinfo; empty elsewhere)."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, flags


def describe() -> str:
    model, flags = cpu()
    have = ", ".join(f for f in FLAGS if f in flags) or "none of " + ", ".join(FLAGS)
    limits = [f"{k}={os.environ[k]}" for k in ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
              if k in os.environ]
    return (f"CPU: {model}; {os.cpu_count()} cores; flags: {have}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads" + (f"; limits: {' '.join(limits)}" if limits
                                                    else ""))


def pretend_without_bf16() -> None:
    """Make skstack's ``"auto"`` resolve in this process as on a CPU without native bfloat16
    (float32 encoders; OpenVINO int8 where installed). OpenVINO still runs this CPU's
    kernels, so the ratios are this CPU's, not an AVX2-only CPU's."""
    import skstack._runtimes

    skstack._runtimes.native_bfloat16 = lambda device: False


if __name__ == "__main__":
    print(describe())

"""The machine a model card's figures were measured on.

onnxruntime picks its int8 and fp16 kernels by instruction set at run time (on x86: AVX2, AVX-512,
VNNI, AMX), and torch's CPU training rounds differently across them too, so a card's quality and
latency figures hold for the CPU that built it. Recording it lets a reader (and the load-time
self-check's message) tell a variant measured on a VNNI CPU from one measured on an AVX2-only CPU.
"""

from __future__ import annotations

import platform
from functools import cache
from importlib import metadata
from pathlib import Path

KERNEL_FLAGS = (
    "sse4_1", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve", "i8mm",
)
"""/proc/cpuinfo flags that select onnxruntime's (MLAS) CPU kernels."""


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features"):
            flags |= set(value.split())
    return model, flags


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@cache
def host() -> dict[str, object]:
    """CPU model, the kernel-selecting flags it has, and the onnxruntime and torch versions."""
    model, flags = _cpuinfo()
    return {
        "cpu": model,
        "machine": platform.machine(),
        "isa": [f for f in KERNEL_FLAGS if f in flags],
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu") or "unknown",
        "torch": _version("torch"),
    }


def describe(measured: dict[str, object]) -> str:
    """One line for messages: 'AMD EPYC (avx2, avx512f, avx512_vnni), onnxruntime 1.23.2'."""
    isa = ", ".join(f for f in measured.get("isa") or [] if f not in ("sse4_1", "avx", "fma", "f16c"))
    return f"{measured.get('cpu')} ({isa or 'no AVX2'}), onnxruntime {measured.get('onnxruntime')}"

"""What the figures were measured on: printed before each part and stored with the results."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shutil
from pathlib import Path

import psutil

PACKAGES = ("torch", "onnxruntime", "kserve", "tritonclient", "nvidia-pytriton", "kubernetes", "kopf", "numpy",
            "usearch", "matplotlib")

NO_GPU = ("none: this machine has no GPU (nvidia-smi absent) and no GPU machine was lent to this work, "
          "so there are no GPU figures")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu() -> str:
    if shutil.which("nvidia-smi"):
        import subprocess
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().replace("\n", "; ") + " (present, not used by these CPU benchmarks)"
    return NO_GPU


def environment() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        from mlsd_devcluster import KUBE_VERSION
        versions["kubernetes (control plane)"] = KUBE_VERSION
    except ImportError:
        pass
    # nvidia-pytriton 0.7.0 ships tritonserver 2.51; the serving part replaces this with what the
    # running server reports on GET /v2.
    versions.setdefault("tritonserver", "2.51 (nvidia-pytriton 0.7.0 wheel; not started yet)")
    memory = psutil.virtual_memory().total
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(memory / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "gpu": gpu(),
        "versions": versions,
    }


def one_line(env: dict, gpu: bool = True) -> str:
    v = env["versions"]
    return (f"{env['cpu']}, {env['logical_cores']} cores, {env['memory_gib']} GiB, load {env['load_average_at_start']}; "
            f"Python {v['python']}, torch {v['torch']}, onnxruntime {v['onnxruntime']}, kserve {v['kserve']}, "
            f"tritonserver {v['tritonserver']}, Kubernetes {v.get('kubernetes (control plane)', '?')} "
            f"(client {v['kubernetes']}), kopf {v['kopf']}" + (f"; GPU: {env['gpu']}" if gpu else ""))

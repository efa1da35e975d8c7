"""Which machine a benchmark ran on: CPU model and flags, cores, memory, GPU, library versions, date.

Results are appended to ``benchmarks/results/<machine>.jsonl``, one file per machine kind; ``render.py`` turns
the latest figures of every kind into the side-by-side table of docs/benchmarks.md.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

#: the CPU flags that decide how fast the kernels are (vector width, low-precision arithmetic, matrix units)
FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "asimd",
    "sve",
    "bf16",
    "i8mm",
)
LIBRARIES = ("torch", "torchvision", "onnxruntime", "numpy", "opencv-python-headless", "zarr", "eosin")


def _cpu() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip()
                if name == "model name" and value.strip():
                    model = value.strip()
                elif name in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, [f for f in FLAGS if f in flags]


def _gpu() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            n = torch.cuda.device_count()
            return f"{n}x {p.name} ({p.total_memory // 2**30} GiB)"
    except Exception:  # noqa: BLE001 - no torch, no driver
        pass
    return None


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def _slug(text: str) -> str:
    text = re.sub(r"\(r\)|\(tm\)|cpu|processor|@.*$|\d+-core", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def machine_info() -> dict:
    """One record describing this machine; ``machine`` is its kind, the name of its results file."""
    cpu, flags = _cpu()
    gpu = _gpu()
    cores = _cores()
    kind = f"{_slug(cpu)}-{cores}c" + ("-avx512bf16" if "avx512_bf16" in flags else "")
    if gpu:
        kind += "-" + _slug(gpu.split(" (")[0])
    versions = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        load = None
    return {
        "machine": kind,
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": cores,
        "memory_gb": _memory_gb(),
        "gpu": gpu,
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "load_avg_1m": load,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "argv": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "commit": _commit(),
    }


def _commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=RESULTS.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def append(records: list[dict], machine: dict) -> Path:
    """Append each record, with the machine's description, to ``results/<machine>.jsonl``; returns the file."""
    import json

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{machine['machine']}.jsonl"
    with open(path, "a") as f:
        for record in records:
            f.write(json.dumps({**record, "env": machine}) + "\n")
    return path

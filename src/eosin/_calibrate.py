"""Precision and runtime chosen by measurement: a short calibration on the actual model and batch shape.

A CPU flag does not say whether a kernel is fast: on a 2-core AMD Zen 4 bf16 autocast trained ResNet-18 1.75
times as fast as float32, on a 2-core Intel Xeon with the same ``avx512_bf16`` flag it was 1.45 times slower. So
``precision="auto"`` (and ``runtime="auto"`` where a second runtime exists) is settled the first time a
(task, model, weights, device, input shape, batch) combination runs on a machine:

1. every candidate path (e.g. ``torch-fp32``, ``torch-bf16``, ``onnx-fp32`` for CPU embedding; ``fp32``,
   ``fp16``, ``bf16`` on CUDA) is built and run on a calibration batch, once to warm up and then ``repeats``
   times timed (the best time counts: the least disturbed by other work on the machine);
2. a path that raises, or whose first output differs from the reference's (float32 PyTorch) by more than
   :data:`TOLERANCE` (relative L2 error per row), or is not finite, is rejected;
3. the fastest remaining path wins, but a path other than the reference must beat the reference by
   ``margin`` (default 3 %): a path that measured slower, or equal within noise, is never chosen.

The decision and its timings are cached in ``$EOSIN_HOME/calibration/`` under a key of everything that
determines them (:func:`machine_key`: CPU model, a hash of the CPU flags, usable cores, torch/onnxruntime
versions, the GPU; plus the model name, a hash of its weights, the input shape and batch size), so a second
run on the same machine does not measure again and a different machine does (nor does one measured while the
machine was busy with other work, :data:`BUSY`, once it is quiet). Output records carry
:meth:`Decision.record` (the choice, the timings in ms per item, what was rejected and why, cached or not);
``eosin info --system`` lists the cached decisions. An explicit ``--precision``/``--runtime`` skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "TOLERANCE",
    "Candidate",
    "Decision",
    "calibrate",
    "calibration_dir",
    "cached_decisions",
    "choose_inference_precision",
    "choose_training_precision",
    "machine_key",
    "relative_error",
    "weights_hash",
]

#: largest relative L2 error per output row against float32 that a faster path may have (bf16 features of a
#: random ResNet-18 on real tiles: ~0.005; fp16: ~0.001)
TOLERANCE = 0.02


@dataclass(frozen=True)
class Candidate:
    """One way to run a model: a precision (``fp32``, ``bf16``, ``fp16``) and a runtime (``torch``, ``onnx``)."""

    precision: str
    runtime: str = "torch"

    @property
    def name(self) -> str:
        return f"{self.runtime}-{self.precision}"


@dataclass
class Decision:
    """What a calibration chose and why: timings in ms per item (``None``: not measured), rejections."""

    precision: str
    runtime: str
    timings_ms: dict[str, float | None] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    cached: bool = False
    key: str = ""
    measured: bool = True

    @property
    def choice(self) -> Candidate:
        return Candidate(self.precision, self.runtime)

    def record(self) -> dict[str, Any]:
        """The decision as one JSON-able record for output records and ``--verbose`` lines."""
        return {
            "choice": self.choice.name,
            "measured": self.measured,
            "cached": self.cached,
            "ms_per_item": self.timings_ms,
            "rejected": self.rejected,
            "key": self.key,
        }


def calibration_dir() -> Path:
    """Where decisions are cached: ``$EOSIN_HOME/calibration``."""
    from eosin._settings import cache_dir

    return cache_dir() / "calibration"


def _cpu_info() -> tuple[str, str]:
    model, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip()
                if name == "model name" and model in ("", platform.processor(), platform.machine()):
                    model = value.strip()
                elif name in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    return model, flags


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_key(device: Any = None) -> dict[str, Any]:
    """What about this machine decides which path is fastest: CPU model and flags, cores, library versions, GPU."""
    import torch

    model, flags = _cpu_info()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cores = os.cpu_count() or 1
    key: dict[str, Any] = {
        "cpu": model,
        "cpu_flags_sha1": hashlib.sha1(flags.encode()).hexdigest()[:12],
        "cores": cores,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
    }
    if device is not None and getattr(device, "type", None) == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        key["gpu"] = f"{props.name} (sm_{props.major}{props.minor}, {props.total_memory // 2**20} MiB)"
        key["cuda"] = torch.version.cuda
    return key


def weights_hash(module: Any) -> str:
    """SHA-1 (12 hex digits) of a module's parameters and buffers, names, shapes and dtypes included."""
    import torch

    digest = hashlib.sha1()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def relative_error(output: Any, reference: Any) -> float:
    """Largest relative L2 error of a row of ``output`` against the same row of ``reference`` (inf if not finite)."""
    import numpy as np

    a, b = (
        np.asarray(v.detach().float().cpu() if hasattr(v, "detach") else v, dtype=np.float64)
        for v in (output, reference)
    )
    if a.shape != b.shape:
        return float("inf")
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    if not np.isfinite(a).all():
        return float("inf")
    scale = np.maximum(np.linalg.norm(b, axis=1), 1e-12)
    return float((np.linalg.norm(a - b, axis=1) / scale).max()) if len(a) else 0.0


def _file(task: str, key: Mapping[str, Any]) -> tuple[str, Path]:
    text = json.dumps(dict(key), sort_keys=True, default=str)
    digest = hashlib.sha1(text.encode()).hexdigest()[:16]
    return digest, calibration_dir() / f"{task}-{digest}.json"


def _load(path: Path, key: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The measurements cached under ``key``: ``{path name: {"ms": float | None, "why": str | None}}``."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    same = json.dumps(saved.get("key"), sort_keys=True, default=str) == json.dumps(
        dict(key), sort_keys=True, default=str
    )
    found = saved.get("measurements") if same else None
    if not isinstance(found, dict):
        return {}
    busy, now = saved.get("load_per_core"), load_per_core()
    if busy is not None and now is not None and busy > BUSY and now < BUSY / 2:
        return {}  # measured while the machine was busy with other work, and it is quiet now: measure again
    return dict(found)


#: load average per core above which a calibration counts as taken on a busy machine: its cached measurements
#: are taken again once the machine is quiet (below half of this)
BUSY = 1.5


def load_per_core() -> float | None:
    """The 1-minute load average per usable core (None where the OS does not tell)."""
    try:
        load = os.getloadavg()[0]
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    except OSError:
        return None
    return round(load / max(cores, 1), 2)


def _save(
    path: Path, task: str, key: Mapping[str, Any], measurements: dict[str, dict], decision: Decision
) -> None:
    from eosin.io import atomic_write_text

    payload = {
        "task": task,
        "key": dict(key),
        "measurements": measurements,
        "decision": {**asdict(decision), "cached": False},
        "load_per_core": load_per_core(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        atomic_write_text(path, json.dumps(payload, indent=1, default=str) + "\n")
    except OSError:  # a read-only cache folder: the decision still holds for this run
        pass


def _decide(
    order: Sequence[Candidate], measured: dict[str, dict[str, Any]], margin: float, digest: str, cached: bool
) -> Decision:
    """The fastest path among those measured fine; another than the reference (first) must win by ``margin``."""
    reference = order[0]
    timings = {c.name: measured[c.name]["ms"] for c in order}
    rejected = {c.name: measured[c.name]["why"] for c in order if measured[c.name]["why"]}
    ok = {n: t for n, t in timings.items() if t is not None and n not in rejected}
    best = reference
    for cand in order[1:]:
        t = ok.get(cand.name)
        if t is not None and t < ok[reference.name] * (1 - margin) and t < ok[best.name]:
            best = cand
    for cand in order:
        if cand != best and cand.name in ok:
            rejected[cand.name] = (
                "slower" if ok[cand.name] >= ok[best.name] else "faster by less than the margin"
            )
    return Decision(best.precision, best.runtime, timings, rejected, cached=cached, key=digest)


def calibrate(
    task: str,
    key: Mapping[str, Any],
    candidates: Sequence[Candidate],
    make: Callable[[Candidate], Callable[[], Any]],
    *,
    items: int,
    reference: Candidate | None = None,
    repeats: int = 2,
    tolerance: float = TOLERANCE,
    margin: float = 0.03,
    clock: Callable[[], float] = time.perf_counter,
    cache: bool = True,
    built: dict[str, Any] | None = None,
    measure_single: bool = False,
) -> Decision:
    """Run each candidate, reject failing or differing ones, and pick the fastest (cached per ``key``).

    Parameters
    ----------
    task
        What is calibrated (``embed``, ``train``...), part of the cache file name.
    key
        Everything besides the candidates that determines the answer: :func:`machine_key`, model name,
        :func:`weights_hash`, input shape, batch size.
    candidates
        The paths to try; with a single one nothing is measured.
    make
        ``make(candidate)`` builds the path and returns ``step``: one call runs the calibration batch and
        returns its output (compared against the reference's first output). It may raise (the path is then
        rejected); a built object it wants to keep can go into ``built[candidate.name]``.
    items
        Items (tiles, crops) per ``step``: timings are reported per item.
    reference
        The path every other is compared with (default: the first candidate); its failure is raised.
    repeats
        Timed calls per path after the warm-up call, the paths taking turns; the best counts. A path whose
        warm-up took more than three times the best warm-up so far is not timed further (it is slower).
    measure_single
        Time a single candidate too (its timing feeds other decisions, e.g. data-loader workers).
    """
    if not candidates:
        raise ValueError("calibrate needs at least one candidate")
    reference = reference or candidates[0]
    names = {c.name for c in candidates}
    # one cache file per (task, key): the measurements of every path tried there, so a later call with fewer
    # candidates (``--precision fp32`` after ``auto``) decides from them without measuring again
    full_key = {**dict(key), "reference": reference.name, "tolerance": tolerance}
    digest, path = _file(task, full_key)
    order = [reference, *[c for c in candidates if c != reference]]
    if len(candidates) == 1 and not measure_single:
        only = candidates[0]
        return Decision(only.precision, only.runtime, key=digest, measured=False)
    saved = _load(path, full_key) if cache else {}
    if names <= set(saved):
        return _decide(order, saved, margin, digest, cached=True)
    measured: dict[str, dict[str, Any]] = {}
    ref_out: Any = None
    best_warm = float("inf")

    def reject(cand: Candidate, why: str, ms: float | None = None) -> None:
        measured[cand.name] = {"ms": ms, "why": why}

    steps: dict[str, Callable[[], Any]] = {}
    for cand in order:  # build, warm up and check every path first
        try:
            step = make(cand)
            t0 = clock()
            out = step()
            warm = clock() - t0
        except Exception as exc:  # noqa: BLE001 - any failure rejects the path
            if cand == reference:
                raise
            reject(cand, f"failed: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        if cand == reference:
            ref_out = out
        err = relative_error(out, ref_out)
        if err > tolerance:
            reject(cand, f"differs from {reference.name}: relative error {err:.3g} > {tolerance:g}")
            continue
        if warm > 3 * best_warm:
            reject(
                cand,
                "slower (its warm-up call alone took over 3x the best)",
                round(1000 * warm / max(items, 1), 3),
            )
            continue
        best_warm = min(best_warm, warm)
        steps[cand.name] = step
    # then time them in turns (A B C A B C): a burst of other work on the machine hits every path alike
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(max(1, repeats)):
        for cand in order:
            if cand.name not in steps:
                continue
            try:
                t0 = clock()
                steps[cand.name]()
                times[cand.name].append(clock() - t0)
            except Exception as exc:  # noqa: BLE001
                if cand == reference:
                    raise
                del steps[cand.name]
                reject(cand, f"failed: {type(exc).__name__}: {str(exc)[:200]}")
    for name in steps:
        measured[name] = {"ms": round(1000 * min(times[name]) / max(items, 1), 3), "why": None}
    steps.clear()
    decision = _decide(order, measured, margin, digest, cached=False)
    if built is not None:
        for name in list(built):
            if name != decision.choice.name:
                del built[name]
    if cache:
        _save(path, task, full_key, {**saved, **measured}, decision)
    return decision


def cached_decisions() -> list[dict[str, Any]]:
    """Every cached decision on this machine (for ``eosin info --system``), newest first."""
    folder = calibration_dir()
    out = []
    for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out


def choose_training_precision(
    model: Any,
    forward: Callable[[Any, Any], Any],
    x: Any,
    device: Any,
    precision: str = "auto",
    *,
    task: str,
    name: str,
    batch_size: int,
    weights_id: str | None = None,
    cache: bool = True,
    measure: bool = False,
    input_shape: Sequence[int] | None = None,
) -> Decision:
    """The training precision for ``model``: explicit, or for ``auto`` the fastest training step that agrees.

    Each candidate precision (:func:`eosin._device.precision_candidates`) trains a copy of ``model`` (AdamW;
    a gradient scaler for fp16) on the calibration batch ``x`` (already on ``device``); ``forward(model, x)``
    returns the loss. The first step's loss must agree with float32's within :data:`TOLERANCE` (the bound the
    bf16 training tests hold step by step); per-row outputs are not compared, because in training mode
    BatchNorm normalises by the statistics of a small calibration batch, which magnifies rounding (bf16
    features of ResNet-18 on 8 tiles of 32 px differed by 4-8 % from fp32's while its training followed
    fp32's). ``model`` itself is not changed. ``weights_id`` stands for the weights in the
    cache key (e.g. ``"random"`` for a fresh initialisation; default :func:`weights_hash`). ``measure``: time
    an explicit precision too (the step time sizes the data loader). ``input_shape``: ``x``'s shape if not a tensor.
    """
    import copy

    import torch

    from eosin._device import autocast, precision_candidates

    candidates = [Candidate(p) for p in precision_candidates(device, precision)]
    if len(candidates) == 1 and not measure:
        return calibrate(task, {}, candidates, lambda c: lambda: None, items=1)
    shape = list(input_shape) if input_shape is not None else list(x.shape)

    def make(cand: Candidate) -> Callable[[], Any]:
        net = copy.deepcopy(model).to(device).train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-5)
        scaler = torch.amp.GradScaler("cuda", enabled=cand.precision == "fp16")

        def step() -> Any:
            with autocast(device, cand.precision):
                loss = forward(net, x)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss.float()).backward()
            scaler.step(optimizer)
            scaler.update()
            return loss.detach().float().reshape(1).cpu()  # waits for the GPU too

        return step

    key = {
        "machine": machine_key(device),
        "device": str(device),
        "model": name,
        "weights": weights_id or weights_hash(model),
        "input": list(shape[1:]),
        "calibration_rows": shape[0],
        "batch_size": batch_size,
    }
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return calibrate(task, key, candidates, make, items=shape[0], cache=cache, measure_single=measure)


def choose_inference_precision(
    forward: Callable[[Any], Any],
    x: Any,
    device: Any,
    precision: str = "auto",
    *,
    task: str,
    name: str,
    weights_id: str,
    batch_size: int,
    cache: bool = True,
) -> Decision:
    """The inference precision: explicit, or for ``auto`` the fastest autocast of ``forward(x)`` that agrees.

    ``forward`` runs the model on the calibration batch ``x`` (already on ``device``) under no autocast of its
    own; each candidate precision (:func:`eosin._device.precision_candidates`) wraps it in its autocast.
    """
    import torch

    from eosin._device import autocast, precision_candidates

    candidates = [Candidate(p) for p in precision_candidates(device, precision)]
    if len(candidates) == 1:
        return calibrate(task, {}, candidates, lambda c: lambda: None, items=1)

    def make(cand: Candidate) -> Callable[[], Any]:
        def step() -> Any:
            with torch.inference_mode(), autocast(device, cand.precision):
                return forward(x).float().cpu()

        return step

    key = {
        "machine": machine_key(device),
        "device": str(device),
        "model": name,
        "weights": weights_id,
        "input": list(x.shape[1:]),
        "calibration_rows": len(x),
        "batch_size": batch_size,
    }
    return calibrate(task, key, candidates, make, items=len(x), cache=cache)

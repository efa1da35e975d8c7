"""Where PyTorch work runs, at what precision, and how a model is prepared for inference: one place for
embedding, training, prediction and segmentation.

``precision="auto"`` is settled by measurement (:mod:`eosin._calibrate`) among the candidates
:func:`precision_candidates` gives:

- CUDA: ``fp32``, ``fp16`` autocast (training adds a gradient scaler) and ``bf16`` where the GPU has it;
- a CPU with bfloat16 instructions (``avx512_bf16`` or ``amx_bf16``): ``fp32`` and ``bf16`` autocast, where
  oneDNN runs convolutions and matrix products in bfloat16 with float32 accumulation. Whether that is faster
  depends on the CPU, not the flag: on a 2-core AMD Zen 4 ResNet-18 trained 1.75 times and embedded 1.25 times
  as fast as in float32, on a 2-core Intel Xeon with the same flag 1.45 and 2.2 times slower
  (docs/benchmarks.md);
- any other CPU, and Apple's MPS: ``fp32`` only (bfloat16 there is emulated and slower than float32).

:func:`resolve_precision` checks an explicit choice against the device (and gives the flag-based guess for
``auto`` where nothing can be measured). Autocast keeps the weights, the optimizer state and the loss in
float32; only the activations of the heavy layers are rounded to 8 bits of mantissa.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from eosin.errors import UsageError

__all__ = [
    "PRECISIONS",
    "autocast",
    "cpu_has_native_bf16",
    "fold_batch_norm",
    "precision_candidates",
    "resolve_precision",
    "select_device",
]

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def select_device(device: Any = "auto"):
    """``auto``: CUDA when available, else Apple's MPS, else the CPU; or exactly the device named."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}.", fix="use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "CUDA was asked for, but PyTorch sees no CUDA device.", fix="use --device cpu or auto"
        )
    return dev


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic instructions (Linux ``/proc/cpuinfo`` flags; else ``False``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(device, precision: str = "auto") -> str:
    """The concrete precision (``fp32``, ``fp16`` or ``bf16``) for ``device``; refuses impossible pairs."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    kind = device.type
    if precision == "auto":
        if kind == "cuda":
            return "fp16"
        return "bf16" if kind == "cpu" and cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and kind != "cuda":
        raise UsageError("fp16 runs on CUDA GPUs only.", fix="use --precision bf16 or fp32")
    if precision == "bf16" and kind == "mps":
        raise UsageError("bf16 autocast does not run on Apple's MPS.", fix="use --precision fp32")
    return precision


def precision_candidates(device, precision: str = "auto") -> list[str]:
    """The precisions a calibration (:mod:`eosin._calibrate`) tries for ``precision`` on ``device``, float32 first.

    An explicit precision is the only candidate (checked by :func:`resolve_precision`). ``auto``: on CUDA fp32,
    fp16 and bf16 (where the GPU has it); on a CPU fp32, plus bf16 where the CPU has bfloat16 instructions
    (elsewhere it is emulated and never faster; where it has them, only a measurement says whether it is);
    fp32 on MPS.
    """
    if precision != "auto":
        return [resolve_precision(device, precision)]
    kind = device.type
    if kind == "cuda":
        import torch

        return ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
    if kind == "cpu" and cpu_has_native_bf16():
        return ["fp32", "bf16"]
    return ["fp32"]


def autocast(device, precision: str):
    """The autocast context of a resolved ``precision`` on ``device`` (a no-op for ``fp32``)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def fold_batch_norm(model: Any) -> Any:
    """An inference copy of ``model`` with every BatchNorm folded into the convolution before it.

    ``torch.fx.experimental.optimization.fuse``: the same function in float32 up to rounding (relative
    difference ~4e-7 on ResNet-18), ~10 % faster on a CPU (one pass over the activations instead of two).
    ``model`` itself when it has no BatchNorm (ViTs) or cannot be traced.
    """
    from torch import nn

    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    try:
        from torch.fx.experimental.optimization import fuse

        return fuse(model)
    except Exception:  # noqa: BLE001 - not symbolically traceable: run it unfused
        return model

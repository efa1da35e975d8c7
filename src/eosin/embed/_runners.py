"""Running an encoder on uint8 tile batches: PyTorch, or ONNX Runtime on the CPU.

Both take ``(n, rows, cols, 3)`` uint8 RGB and return ``(n, dim)`` float32 features; both fold the conversion
to float and the encoder's mean/std normalization into the model run.

Why ONNX Runtime for float32 on a CPU: on a 2-core AMD EPYC (Zen 4, AVX-512), ResNet-18 at 224 px, batch 64,
ran at ~117 tiles/s in ONNX Runtime against ~68 tiles/s in PyTorch with ``inference_mode`` and channels_last
(same process, interleaved runs; docs/benchmarks.md has the end-to-end figures); on an AVX2-only machine the
gap was similar (52 against 27-30). So on a CPU in fp32, ``runtime="auto"`` exports the encoder to ONNX once
per run (in memory) and uses ONNX Runtime when it is installed and the export works. bf16 (CPUs with native
bfloat16: ~135 tiles/s on the same machine) and GPUs use PyTorch with autocast, channels_last weights and, on
CUDA, pinned memory.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

import numpy as np

from eosin.errors import UsageError

__all__ = ["RUNTIMES", "choose_runner", "make_runner"]

#: tiles of the calibration batch on a CPU (a GPU uses the whole batch: small batches only measure launches)
CALIBRATION_TILES = 16

RUNTIMES = ("auto", "torch", "onnx")


class _Normalized:
    """The encoder behind uint8 NHWC input: ``(x / 255 - mean) / std`` then the model (an ``nn.Module``)."""

    @staticmethod
    def wrap(model: Any, inner: Any = None):
        """Wrap ``model`` (an :class:`eosin.models.Encoder`), running ``inner`` (default ``model``) on the input."""
        import torch
        from torch import nn

        mean = torch.tensor(model.spec.mean).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(model.spec.std).view(1, 3, 1, 1) * 255.0

        class Wrapped(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model if inner is None else inner
                self.register_buffer("scale", 1.0 / std)
                self.register_buffer("shift", -mean / std)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                # NHWC -> NCHW: the permuted view is channels_last, which oneDNN and cuDNN prefer
                x = x.permute(0, 3, 1, 2).float()
                return self.model(torch.addcmul(self.shift, x, self.scale)).float()

        return Wrapped().eval()


class TorchRunner:
    name = "torch"

    def __init__(self, model: Any, device: Any, precision: str):
        import torch

        self.device = device
        from eosin._device import fold_batch_norm

        self.net = _Normalized.wrap(model, fold_batch_norm(model)).to(device)
        if device.type in ("cpu", "cuda"):
            self.net = self.net.to(memory_format=torch.channels_last)
        self.pin = device.type == "cuda"
        self.asynchronous = self.pin  # submit() returns before the GPU is done
        self.precision = precision
        self._torch = torch

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.submit(images).result()

    def submit(self, images: np.ndarray) -> Any:
        """Start the model on ``images``; ``.result()`` of the returned handle waits for the features.

        On CUDA nothing waits here: the uint8 batch is copied into page-locked memory (PyTorch's caching host
        allocator reuses those blocks once their copies are done), sent with a non-blocking copy, the model is
        queued, and the features come back by a non-blocking copy into page-locked memory. So while the GPU
        computes one batch, this process hands it the next (and the tile stream's workers decode the one after).
        """
        from eosin._device import autocast

        torch = self._torch
        x = torch.from_numpy(images)
        if not self.pin:
            with torch.inference_mode(), autocast(self.device, self.precision):
                return _Done(self.net(x.to(self.device)).cpu().numpy())
        staged = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
        staged.copy_(x)
        with torch.inference_mode(), autocast(self.device, self.precision):
            out = self.net(staged.to(self.device, non_blocking=True))
            host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
            host.copy_(out, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return _Pending(done, host)


class _Done:
    """A finished result (CPU runners compute synchronously)."""

    def __init__(self, value: np.ndarray):
        self.value = value

    def result(self) -> np.ndarray:
        return self.value


class _Pending:
    """Features on their way back from the GPU: ``result`` waits for the copy, then hands a NumPy copy."""

    def __init__(self, event: Any, host: Any):
        self.event, self.host = event, host

    def result(self) -> np.ndarray:
        self.event.synchronize()
        return self.host.numpy().copy()  # the pinned block goes back to PyTorch's cache


class OnnxRunner:
    name = "onnx"

    def __init__(self, model: Any, threads: int | None = None):
        import onnxruntime as ort
        import torch

        net = _Normalized.wrap(model).cpu()
        size = model.input_size
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (torch.zeros(1, size, size, 3, dtype=torch.uint8),),
                buffer,
                input_names=["tiles"],
                output_names=["features"],
                dynamic_axes={"tiles": {0: "n"}, "features": {0: "n"}},
                dynamo=False,
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or _cpus()
        self.session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"tiles": np.ascontiguousarray(images)})[0]

    def submit(self, images: np.ndarray) -> _Done:
        return _Done(self(images))


def make_runner(model: Any, device: Any, precision: str, runtime: str = "auto"):
    """The runner for ``runtime`` (``auto``: ONNX Runtime on a CPU in fp32 when available, else PyTorch)."""
    if runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    onnx_possible = device.type == "cpu" and precision == "fp32"
    if runtime == "onnx" and not onnx_possible:
        raise UsageError(
            "the ONNX runtime runs fp32 on the CPU only.", fix="use --runtime torch for GPUs or bf16/fp16"
        )
    if runtime in ("auto", "onnx") and onnx_possible:
        try:
            return OnnxRunner(model)
        except ImportError:
            if runtime == "onnx":
                raise UsageError(
                    "onnxruntime is not installed.", fix="pip install onnxruntime onnx"
                ) from None
        except Exception as exc:  # noqa: BLE001 - an architecture the exporter cannot take: PyTorch runs it
            if runtime == "onnx":
                raise UsageError(
                    f"this encoder could not be exported to ONNX ({exc}).", fix="use --runtime torch"
                ) from None
            warnings.warn(
                f"ONNX export failed ({type(exc).__name__}); running the encoder in PyTorch", stacklevel=2
            )
    return TorchRunner(model, device, precision)


def _onnx_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def runner_candidates(device: Any, precision: str, runtime: str) -> list[Any]:
    """The (precision, runtime) paths ``auto`` may take for this device: PyTorch in each precision of
    :func:`eosin._device.precision_candidates`, plus ONNX Runtime in fp32 on a CPU when it is installed."""
    from eosin._calibrate import Candidate
    from eosin._device import precision_candidates

    if runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "onnx":
        if precision not in ("auto", "fp32") or device.type != "cpu":
            raise UsageError(
                "the ONNX runtime runs fp32 on the CPU only.", fix="use --runtime torch for GPUs or bf16/fp16"
            )
        return [Candidate("fp32", "onnx")]
    out = [Candidate(p, "torch") for p in precision_candidates(device, precision)]
    if (
        runtime == "auto"
        and device.type == "cpu"
        and "fp32" in [c.precision for c in out]
        and _onnx_installed()
    ):
        out.append(Candidate("fp32", "onnx"))
    return out


def choose_runner(
    model: Any,
    device: Any,
    precision: str,
    runtime: str,
    sample: np.ndarray,
    *,
    batch_size: int,
    cache: bool = True,
):
    """The runner for ``precision``/``runtime``, ``auto`` ones settled by a calibration on ``sample``.

    ``sample`` is a uint8 batch of real tiles as the model will see them (``(n, rows, cols, 3)``); on a CPU its
    first :data:`CALIBRATION_TILES` tiles are timed. Returns ``(runner, decision)``
    (:class:`eosin._calibrate.Decision`: the choice, timings, rejections; cached per machine and model).
    """
    from eosin._calibrate import calibrate, machine_key, weights_hash

    candidates = runner_candidates(device, precision, runtime)
    rows = sample if device.type == "cuda" else sample[:CALIBRATION_TILES]
    built: dict[str, Any] = {}

    def make(cand):
        if cand.runtime == "onnx":
            runner = OnnxRunner(model)
        else:
            runner = TorchRunner(model, device, cand.precision)
        built[cand.name] = runner
        return lambda: runner(rows)

    key = {
        "machine": machine_key(device),
        "device": str(device),
        "model": model.spec.name,
        "weights": weights_hash(model),
        "input": list(rows.shape[1:]),
        "calibration_rows": len(rows),
        "batch_size": batch_size,
    }
    decision = calibrate(
        "embed", key, candidates, make, items=len(rows), reference=candidates[0], built=built, cache=cache
    )
    runner = built.get(decision.choice.name)
    if runner is None:  # cached or a single candidate: nothing was built yet
        runner = make_runner(model, device, decision.precision, decision.runtime)
    return runner, decision


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)

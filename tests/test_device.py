"""Device and precision choice: ``auto`` picks mixed precision only where the hardware runs it natively."""

from __future__ import annotations

import pytest
import torch

from eosin import _device
from eosin.errors import UsageError

pytestmark = pytest.mark.torch

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_the_hardware(monkeypatch, native):
    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: native)
    assert _device.resolve_precision(CPU, "auto") == ("bf16" if native else "fp32")
    assert _device.resolve_precision(CUDA, "auto") == "fp16"
    assert _device.resolve_precision(MPS, "auto") == "fp32"
    assert _device.resolve_precision(CPU, "bf16") == "bf16"  # asked for: allowed (emulated where not native)


def test_impossible_precisions_are_refused():
    with pytest.raises(UsageError, match="fp16 runs on CUDA"):
        _device.resolve_precision(CPU, "fp16")
    with pytest.raises(UsageError, match="MPS"):
        _device.resolve_precision(MPS, "bf16")
    with pytest.raises(UsageError, match="unknown precision"):
        _device.resolve_precision(CPU, "int4")
    with pytest.raises(UsageError, match="unknown device"):
        _device.select_device("tpu")


def test_native_bf16_matches_the_cpu_flags():
    flags: list[str] = []  # no /proc/cpuinfo flags line (macOS, Windows, ARM): no native bf16 is assumed
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        pass
    assert _device.cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & set(flags))


def test_autocast_runs_bf16_on_the_cpu():
    layer = torch.nn.Linear(8, 4)
    with _device.autocast(CPU, "bf16"):
        assert layer(torch.ones(2, 8)).dtype == torch.bfloat16
    with _device.autocast(CPU, "fp32"):
        assert layer(torch.ones(2, 8)).dtype == torch.float32

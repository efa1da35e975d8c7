"""Precision and runtime by measurement: the decision logic (fake clocks), the cache, and real calibrations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eosin import _calibrate
from eosin._calibrate import Candidate, calibrate, relative_error

FP32, BF16, ONNX = Candidate("fp32"), Candidate("bf16"), Candidate("fp32", "onnx")
KEY = {"machine": {"cpu": "test"}, "model": "m", "weights": "abc", "input": [8, 8, 3], "batch_size": 4}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("EOSIN_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(_calibrate, "load_per_core", lambda: None)  # the machine's load plays no part here
    return tmp_path / "home"


class Clock:
    """A fake clock that a path advances by its cost on every call."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def paths(clock: Clock, costs: dict, outputs: dict | None = None, calls: list | None = None):
    ref = np.linspace(1.0, 2.0, 12).reshape(3, 4)

    def make(cand: Candidate):
        if isinstance(costs[cand.name], Exception):
            raise costs[cand.name]

        def step():
            if calls is not None:
                calls.append(cand.name)
            clock.t += costs[cand.name]
            return (outputs or {}).get(cand.name, ref)

        return step

    return make


@pytest.mark.parametrize(
    ("costs", "choice"),
    [
        ({"torch-fp32": 1.0, "torch-bf16": 0.5, "onnx-fp32": 0.8}, "torch-bf16"),
        ({"torch-fp32": 1.0, "torch-bf16": 2.2, "onnx-fp32": 0.6}, "onnx-fp32"),  # the Intel case
        ({"torch-fp32": 1.0, "torch-bf16": 2.2, "onnx-fp32": 1.4}, "torch-fp32"),
        ({"torch-fp32": 1.0, "torch-bf16": 0.99, "onnx-fp32": 1.01}, "torch-fp32"),  # within noise: fp32
    ],
)
def test_the_fastest_path_is_chosen_never_a_slower_one(costs, choice):
    clock = Clock()
    d = calibrate("t", KEY, [FP32, BF16, ONNX], paths(clock, costs), items=4, clock=clock, cache=False)
    assert d.choice.name == choice
    assert d.timings_ms["torch-fp32"] == pytest.approx(1000 * costs["torch-fp32"] / 4)
    chosen = d.timings_ms[choice]
    # nothing measured faster, except by less than the 3 % margin that keeps float32 within noise
    assert all(t is None or t >= chosen * 0.97 for t in d.timings_ms.values())
    assert set(d.rejected) == {"torch-fp32", "torch-bf16", "onnx-fp32"} - {choice}


def test_a_failing_path_is_never_chosen():
    clock = Clock()
    costs = {"torch-fp32": 1.0, "torch-bf16": RuntimeError("no bf16 kernel"), "onnx-fp32": 1.5}
    d = calibrate("t", KEY, [FP32, BF16, ONNX], paths(clock, costs), items=4, clock=clock, cache=False)
    assert d.choice == FP32
    assert d.rejected["torch-bf16"].startswith("failed: RuntimeError: no bf16 kernel")
    assert d.timings_ms["torch-bf16"] is None


def test_a_path_that_differs_from_fp32_is_never_chosen_however_fast():
    clock = Clock()
    ref = np.linspace(1.0, 2.0, 12).reshape(3, 4)
    off = ref.copy()
    off[1] *= 1.1  # one row 10 % off
    costs = {"torch-fp32": 1.0, "torch-bf16": 0.1, "onnx-fp32": 0.2}
    outputs = {"torch-bf16": off, "onnx-fp32": np.full_like(ref, np.nan)}
    d = calibrate(
        "t", KEY, [FP32, BF16, ONNX], paths(clock, costs, outputs), items=4, clock=clock, cache=False
    )
    assert d.choice == FP32
    assert "differs" in d.rejected["torch-bf16"] and "differs" in d.rejected["onnx-fp32"]
    # within the tolerance it is taken
    near = ref * (1 + 0.5 * _calibrate.TOLERANCE)
    clock = Clock()
    d = calibrate(
        "t", KEY, [FP32, BF16], paths(clock, costs, {"torch-bf16": near}), items=4, clock=clock, cache=False
    )
    assert d.choice == BF16


def test_a_failing_reference_is_raised():
    clock = Clock()
    costs = {"torch-fp32": ValueError("broken model"), "torch-bf16": 0.5}
    with pytest.raises(ValueError, match="broken model"):
        calibrate("t", KEY, [FP32, BF16], paths(clock, costs), items=4, clock=clock, cache=False)


def test_relative_error_is_per_row():
    a = np.ones((2, 3))
    b = a.copy()
    b[1, 0] = 1.3
    assert relative_error(a, a) == 0
    assert relative_error(b, a) == pytest.approx(0.3 / np.sqrt(3))
    assert relative_error(a[:1], a) == float("inf")


def test_the_decision_is_cached_per_machine(home):
    clock, calls = Clock(), []
    costs = {"torch-fp32": 1.0, "torch-bf16": 0.5}
    first = calibrate("t", KEY, [FP32, BF16], paths(clock, costs, calls=calls), items=4, clock=clock)
    assert not first.cached and first.choice == BF16 and calls
    files = list((home / "calibration").glob("t-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["decision"]["precision"] == "bf16"
    calls.clear()
    again = calibrate("t", KEY, [FP32, BF16], paths(clock, costs, calls=calls), items=4, clock=clock)
    assert again.cached and again.choice == BF16 and again.timings_ms == first.timings_ms
    assert calls == []  # nothing was measured again
    only32 = calibrate(
        "t", KEY, [FP32], paths(clock, costs, calls=calls), items=4, clock=clock, measure_single=True
    )
    assert only32.cached and only32.choice == FP32 and only32.timings_ms == {"torch-fp32": 250.0}
    assert (
        calls == []
    )  # a subset of what was measured (an explicit --precision fp32) is decided from the cache
    other = {**KEY, "machine": {"cpu": "another CPU"}}
    moved = calibrate(
        "t",
        other,
        [FP32, BF16],
        paths(clock, {**costs, "torch-bf16": 2.0}, calls=calls),
        items=4,
        clock=clock,
    )
    assert not moved.cached and moved.choice == FP32 and calls  # another machine measures afresh
    assert len(list((home / "calibration").glob("t-*.json"))) == 2
    assert {d["decision"]["precision"] for d in _calibrate.cached_decisions()} == {"bf16", "fp32"}


def test_a_decision_taken_on_a_busy_machine_is_measured_again_when_it_is_quiet(monkeypatch):
    clock, calls = Clock(), []
    costs = {"torch-fp32": 1.0, "torch-bf16": 0.5}
    monkeypatch.setattr(_calibrate, "load_per_core", lambda: 4.0)  # other work on the machine
    calibrate("t", KEY, [FP32, BF16], paths(clock, costs), items=4, clock=clock)
    again = calibrate("t", KEY, [FP32, BF16], paths(clock, costs, calls=calls), items=4, clock=clock)
    assert again.cached and calls == []  # still busy: the measurements stand
    monkeypatch.setattr(_calibrate, "load_per_core", lambda: 0.3)
    quiet = calibrate("t", KEY, [FP32, BF16], paths(clock, costs, calls=calls), items=4, clock=clock)
    assert not quiet.cached and calls  # quiet now: measured again, and that is kept
    calls.clear()
    assert calibrate("t", KEY, [FP32, BF16], paths(clock, costs, calls=calls), items=4, clock=clock).cached
    assert calls == []


def test_one_candidate_measures_nothing():
    d = calibrate("t", KEY, [BF16], lambda c: pytest.fail("built"), items=4)
    assert d.choice == BF16 and not d.measured and d.timings_ms == {}


def test_machine_key_names_the_cpu_and_the_libraries():
    import torch

    key = _calibrate.machine_key(torch.device("cpu"))
    assert key["cores"] >= 1 and key["torch"] == torch.__version__
    assert set(key) >= {"cpu", "cpu_flags_sha1", "cores", "torch_threads", "onnxruntime"}


def test_weights_hash_follows_the_weights():
    import torch

    a = torch.nn.Linear(4, 2)
    h = _calibrate.weights_hash(a)
    assert h == _calibrate.weights_hash(a)
    with torch.no_grad():
        a.weight[0, 0] += 1
    assert _calibrate.weights_hash(a) != h


@pytest.mark.torch
def test_a_real_calibration_of_a_tiny_encoder(home):
    """The real runners on a tiny encoder: every candidate is timed, features agree, the choice is reused."""
    import torch

    from eosin.embed._runners import choose_runner, runner_candidates
    from eosin.models import create_encoder

    torch.manual_seed(0)
    model = create_encoder("resnet18", weights=None, tiny=True).eval()
    dev = torch.device("cpu")
    rng = np.random.default_rng(0)
    sample = rng.integers(0, 256, size=(4, 64, 64, 3), dtype=np.uint8)
    names = [c.name for c in runner_candidates(dev, "auto", "auto")]
    assert names[0] == "torch-fp32" and len(names) >= 2  # fp32 in PyTorch and ONNX Runtime at least
    runner, decision = choose_runner(model, dev, "auto", "auto", sample, batch_size=4)
    assert not decision.cached and decision.choice.name in names
    assert set(decision.timings_ms) == set(names)
    assert decision.timings_ms[decision.choice.name] == min(
        t for t in decision.timings_ms.values() if t is not None
    )
    assert runner.name == decision.runtime
    expect = choose_runner(model, dev, "fp32", "torch", sample, batch_size=4)[0](sample)
    assert relative_error(runner(sample), expect) <= _calibrate.TOLERANCE
    again, cached = choose_runner(model, dev, "auto", "auto", sample, batch_size=4)
    assert cached.cached and cached.choice == decision.choice and again.name == runner.name
    # explicit settings are obeyed without measuring
    forced, d = choose_runner(model, dev, "bf16", "torch", sample, batch_size=4)
    assert forced.name == "torch" and forced.precision == "bf16" and not d.measured


@pytest.mark.torch
@pytest.mark.parametrize(
    ("input_ms", "step_ms", "cpus", "device", "expect"),
    [
        (3.0, 40.0, 2, "cpu", (0, 2)),  # 2-core CPU, ResNet-18: a worker would halve the model's cores
        (12.0, 340.0, 2, "cpu", (0, 2)),  # the AVX2 machine of 2026-11
        (30.0, 10.0, 2, "cpu", (1, 1)),  # input dearer than the step: one worker, the model keeps one core
        (3.0, 10.0, 16, "cpu", (1, 15)),  # one worker keeps up; more would only take cores
        (12.0, 0.5, 16, "cuda", (15, 16)),  # a GPU: as many as it takes, all but one core
        (1.0, 0.5, 16, "cuda", (2, 16)),
        (0.1, 5.0, 1, "cpu", (0, 1)),
    ],
)
def test_loader_workers_follow_the_measured_costs(input_ms, step_ms, cpus, device, expect):
    from eosin.data import choose_loader_workers

    assert choose_loader_workers(input_ms, step_ms, cpus=cpus, device_type=device) == expect


@pytest.mark.torch
def test_info_system_lists_the_machine_and_its_decisions(capsys):
    from eosin.cli._main import main

    clock = Clock()
    calibrate(
        "embed", KEY, [FP32, BF16], paths(clock, {"torch-fp32": 1.0, "torch-bf16": 0.5}), items=4, clock=clock
    )
    assert main(["info", "--system", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["machine"]["cores"] >= 1 and "fp32" in record["auto_candidates"]
    (decision,) = record["decisions"]
    assert decision["task"] == "embed" and decision["model"] == "m" and decision["precision"] == "bf16"
    assert decision["timings_ms"] == {"torch-fp32": 250.0, "torch-bf16": 125.0}
    assert main(["info", "--system"]) == 0
    text = capsys.readouterr().out
    assert "this machine" in text and "torch-bf16" in text and "1 cached" in text
    assert main(["info"]) == 2  # neither slides nor --system
    assert "--system" in capsys.readouterr().err

"""Shared fixtures. Real data is found through one setting: ``EOSIN_DATA`` (default ``../shared/data``).

Outside CI a test whose data is absent is skipped with the reason; in CI (``CI=true``) absent data is an error,
so a missing data folder can never turn the suite green by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _data_dir() -> Path:
    env = os.environ.get("EOSIN_DATA")
    return Path(env).expanduser() if env else ROOT.parent / "shared" / "data"


DATA = _data_dir()
SLIDES = DATA / "slides"


def require(path: Path) -> Path:
    """Return ``path``; skip the test (fail in CI) when the data file or folder is absent."""
    if not path.exists():
        message = f"test data {path} is absent (set EOSIN_DATA; see README.md, 'Test data')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return require(DATA)


@pytest.fixture(scope="session")
def slides_dir() -> Path:
    return require(SLIDES)


def fake_calibration_timings(monkeypatch, home: Path, costs: dict[str, float]) -> list[tuple[str, list[str]]]:
    """Make every calibration see ``costs`` (seconds per run of each path, e.g. ``{"torch-fp32": 1.0,
    "torch-bf16": 3.0}``) on a CPU whose flags promise bf16, with its cache in ``home``; the paths still run for real
    (so their outputs are compared). Returns the list of ``(task, candidate names)`` calibrated."""
    from eosin import _calibrate, _device

    monkeypatch.setenv("EOSIN_HOME", str(home))
    monkeypatch.setattr(_calibrate, "load_per_core", lambda: None)
    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: True)
    real, seen = _calibrate.calibrate, []

    def timed_calibrate(task, key, candidates, make, **kw):
        clock = [0.0]

        def timed(cand):
            step = make(cand)

            def run():
                clock[0] += costs[cand.name]
                return step()

            return run

        seen.append((task, [c.name for c in candidates]))
        return real(task, key, candidates, timed, clock=lambda: clock[0], **kw)

    monkeypatch.setattr(_calibrate, "calibrate", timed_calibrate)
    return seen

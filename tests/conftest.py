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

"""Global defaults, read once from the environment.

``EOSIN_DATA``: folder of the real test data (default ``../shared/data`` beside the project checkout).
``EOSIN_HOME``: eosin's own cache folder, e.g. for model weights (default ``~/.cache/eosin``).
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Where the real sample and test data live (``EOSIN_DATA``, default ``../shared/data``)."""
    env = os.environ.get("EOSIN_DATA")
    if env:
        return Path(env).expanduser()
    return Path.cwd().parent / "shared" / "data"


def cache_dir() -> Path:
    """eosin's cache folder (``EOSIN_HOME``, default ``~/.cache/eosin``)."""
    env = os.environ.get("EOSIN_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "eosin"

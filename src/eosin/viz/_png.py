"""Writing pictures atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["save_png"]


def save_png(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` (``(rows, cols)`` grey or ``(rows, cols, 3)`` RGB, uint8 or bool) as a PNG, atomically.

    The image is written to a temporary file beside ``path`` and renamed into place, so a crash leaves the old
    file or none, never half a picture. Returns the path written.
    """
    from PIL import Image

    path = Path(path)
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    from eosin.io import atomic_open  # its temporary name lets the next run remove a killed run's debris

    with atomic_open(path, "wb") as f:
        Image.fromarray(a).save(f, format="PNG")
    return path

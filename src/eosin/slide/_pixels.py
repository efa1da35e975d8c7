"""What every backend hands back in the Slide contract: RGB uint8 pixels, and one typed error when decoding fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eosin.errors import CorruptSlideError

__all__ = ["as_rgb", "read_error"]


def read_error(
    path: Path, exc: BaseException, level: int, x: int, y: int, width: int, height: int
) -> CorruptSlideError:
    """The :class:`CorruptSlideError` for a region that could not be decoded (truncated file, bad tile bytes)."""
    detail = " ".join(str(exc).split())[:200] or type(exc).__name__
    return CorruptSlideError(
        f"cannot decode the region x={x}, y={y}, {width}x{height} of level {level} ({detail}).",
        path=path,
        fix="the file is probably truncated or damaged: copy or download it again, or export it anew from the scanner",
    )


def as_rgb(arr: np.ndarray) -> np.ndarray:
    """Any grey, RGB or RGBA array as RGB uint8."""
    if arr.dtype != np.uint8:
        top = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else max(float(arr.max()), 1e-12)
        arr = np.clip(arr.astype(np.float32) * (255.0 / top), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        return np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])

"""What happens to tiles in the decoding workers before the model sees them: stain, then size."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TilePrep", "reading_grid"]


class TilePrep:
    """A picklable batch transform run in the tile stream's workers: stain normalization, then resizing.

    ``normalizer`` is a fitted eosin stain normalizer (or None); ``size`` the encoder's input side (None: keep).
    """

    def __init__(self, normalizer: Any = None, size: int | None = None):
        self.normalizer = normalizer
        self.size = size

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.normalizer is not None:
            batch = self.normalizer.transform(batch)
        if self.size is not None and batch.shape[1:3] != (self.size, self.size):
            import cv2

            shrink = batch.shape[1] > self.size
            method = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
            batch = np.stack([cv2.resize(t, (self.size, self.size), interpolation=method) for t in batch])
        return batch


def reading_grid(
    grid: Any, slide: Any, *, input_size: int, native_mpp: float | None
) -> tuple[Any, int | None]:
    """The grid to read for an encoder, and the size to resize to afterwards (None when no resizing is needed).

    When the encoder has a native resolution and the slide a trustworthy mpp, each tile is read centred on the
    grid tile, ``input_size`` pixels at ``native_mpp`` (the field of view the model was trained on). Otherwise the
    grid's own tiles are read and resized to ``input_size``.
    """
    from dataclasses import replace

    if native_mpp is None or slide.mpp_problem() is not None:
        return grid, (input_size if grid.tile_size != input_size else None)
    downsample = native_mpp / slide.require_mpp()
    if abs(downsample - grid.downsample) < 1e-6 and grid.tile_size == input_size:
        return grid, None
    half_old = grid.extent / 2.0
    half_new = input_size * downsample / 2.0
    x = np.round(grid.x + half_old - half_new).astype(np.int64)
    y = np.round(grid.y + half_old - half_new).astype(np.int64)
    read = replace(grid, x=x, y=y, tile_size=input_size, overlap=0, downsample=downsample, mpp=native_mpp)
    return read, None

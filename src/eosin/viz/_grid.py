"""Tile grids drawn over a slide thumbnail."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["draw_grid"]


def draw_grid(
    thumb: np.ndarray, grid: Any, masks: Any, *, color: tuple[int, int, int] = (0, 90, 255)
) -> np.ndarray:
    """Outline every tile of ``grid`` on ``thumb`` (a thumbnail at the resolution of ``masks``).

    Tiles are shaded by their tissue fraction (stronger = more tissue); returns a new RGB uint8 image.
    """
    import cv2

    out = thumb.copy()
    dx, dy = (masks.downsample, masks.downsample) if np.ndim(masks.downsample) == 0 else masks.downsample
    ox, oy = (masks.origin, masks.origin) if np.ndim(masks.origin) == 0 else masks.origin
    x0 = (grid.x - ox) / dx
    y0 = (grid.y - oy) / dy
    w, h = grid.extent / dx, grid.extent / dy
    shade = np.zeros_like(out)
    alpha = np.zeros(out.shape[:2], np.float32)
    for xi, yi, frac in zip(x0, y0, grid.tissue_fraction):
        p0 = (int(round(xi)), int(round(yi)))
        p1 = (int(round(xi + w)) - 1, int(round(yi + h)) - 1)
        cv2.rectangle(shade, p0, p1, color, -1)
        cv2.rectangle(alpha, p0, p1, float(0.15 + 0.25 * frac), -1)
    out = (out * (1 - alpha[..., None]) + shade * alpha[..., None]).astype(np.uint8)
    if w >= 4:  # outlines only when tiles are large enough on the thumbnail to see them
        for xi, yi in zip(x0, y0):
            cv2.rectangle(
                out,
                (int(round(xi)), int(round(yi))),
                (int(round(xi + w)) - 1, int(round(yi + h)) - 1),
                color,
                1,
            )
    return out

"""QC pictures: artefact masks shaded over a thumbnail, and tiles coloured by their flags."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["COLOURS", "draw_tile_flags", "qc_overlay"]

#: RGB colour of each layer in the pictures and the report's legend
COLOURS: dict[str, tuple[int, int, int]] = {
    "tissue": (0, 170, 0),
    "pen": (0, 90, 255),
    "dark": (230, 120, 0),
    "edge": (220, 0, 220),
    "stain": (240, 200, 0),
    "blur": (230, 0, 0),
    "learned_artefact": (0, 200, 210),
}


def qc_overlay(rgb: np.ndarray, tissue: np.ndarray, layers: dict[str, np.ndarray]) -> np.ndarray:
    """Tissue outlined, each artefact layer (name → bool mask, same shape) shaded in its :data:`COLOURS`."""
    import cv2

    out = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8).copy()
    width = max(1, round(max(out.shape[:2]) / 700))
    for name, mask in layers.items():
        mask = np.asarray(mask, bool)
        if not mask.any():
            continue
        shade = out.copy()
        shade[mask] = COLOURS[name]
        out = cv2.addWeighted(out, 0.45, shade, 0.55, 0)
    contours, _ = cv2.findContours(tissue.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, COLOURS["tissue"], width)
    return out


def draw_tile_flags(
    rgb: np.ndarray, grid: Any, flags: np.ndarray, bits: dict[str, int], *, downsample: Any, origin: Any
) -> np.ndarray:
    """Tiles of ``grid`` drawn on ``rgb``: clean tiles outlined faintly, flagged ones filled with the colour of
    their first flag (in :data:`COLOURS` order)."""
    import cv2

    out = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8).copy()
    dx, dy = (downsample, downsample) if np.ndim(downsample) == 0 else downsample
    ox, oy = (origin, origin) if np.ndim(origin) == 0 else origin
    fill = out.copy()
    order = [name for name in COLOURS if name in bits]
    for x, y, f in zip(grid.x, grid.y, flags):
        p0 = (round((x - ox) / dx), round((y - oy) / dy))
        p1 = (round((x - ox + grid.extent) / dx) - 1, round((y - oy + grid.extent) / dy) - 1)
        hit = [name for name in order if f & bits[name]]
        if hit:
            cv2.rectangle(fill, p0, p1, COLOURS[hit[0]], -1)
        else:
            cv2.rectangle(out, p0, p1, (0, 120, 255), 1)
    return cv2.addWeighted(out, 0.5, fill, 0.5, 0)

"""Tile grids: where the tiles of a slide are, at which resolution, and how much tissue each holds."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eosin.errors import UsageError
from eosin.io import param_digest

__all__ = ["TileGrid", "make_grid", "resolve_downsample", "box_fractions"]


@dataclass(frozen=True, eq=False)
class TileGrid:
    """The tiles of one slide at one resolution, in grid order (rows top to bottom, then columns).

    Attributes
    ----------
    x, y
        ``(n,)`` int64 top-left corners in level-0 pixels (origin: top-left of the full image).
    tissue_fraction, pen_fraction
        ``(n,)`` float32 fraction of each tile covered by tissue / pen marks.
    section
        ``(n,)`` int32 cross-section id of each tile (0 when it covers none).
    tile_size
        Width and height of a tile in output pixels.
    overlap, stride
        Overlap between neighbours and step between tiles, in output pixels (``stride = tile_size - overlap``).
    downsample
        Level-0 pixels per output pixel.
    mpp
        Microns per output pixel, or ``None`` when the slide's mpp is unknown (a downsample-only grid).
    extent
        Side of a tile in level-0 pixels (``tile_size * downsample``).
    bounds
        ``(x, y, width, height)`` of the slide region the grid covers, level-0 pixels.
    params
        The parameters that made the grid (also those of the tissue detection); ``key`` is derived from them.
    """

    x: np.ndarray
    y: np.ndarray
    tissue_fraction: np.ndarray
    pen_fraction: np.ndarray
    section: np.ndarray
    tile_size: int
    overlap: int
    downsample: float
    mpp: float | None
    bounds: tuple[int, int, int, int]
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        res = f"mpp={self.mpp:g}" if self.mpp is not None else f"downsample={self.downsample:g}"
        return f"TileGrid(n={len(self)}, {res}, tile_size={self.tile_size}, overlap={self.overlap}, key={self.key!r})"

    @property
    def stride(self) -> int:
        return self.tile_size - self.overlap

    @property
    def extent(self) -> float:
        return self.tile_size * self.downsample

    @property
    def coords(self) -> np.ndarray:
        """``(n, 2)`` int64 level-0 ``(x, y)`` of every tile."""
        return np.stack([self.x, self.y], axis=1)

    @property
    def key(self) -> str:
        """A readable, parameter-derived name for the store, e.g. ``mpp0.5_256px_o0_t0.5_3f9a1c``."""
        res = f"mpp{self.mpp:g}" if self.mpp is not None else f"ds{self.downsample:g}"
        min_tissue = self.params.get("min_tissue", 0)
        digest = param_digest(self.params)
        return f"{res}_{self.tile_size}px_o{self.overlap}_t{min_tissue:g}_{digest}"

    def subset(self, indices: np.ndarray) -> TileGrid:
        """A grid of the tiles at ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        return TileGrid(
            x=self.x[idx],
            y=self.y[idx],
            tissue_fraction=self.tissue_fraction[idx],
            pen_fraction=self.pen_fraction[idx],
            section=self.section[idx],
            tile_size=self.tile_size,
            overlap=self.overlap,
            downsample=self.downsample,
            mpp=self.mpp,
            bounds=self.bounds,
            params={**self.params, "subset": hashlib.sha1(idx.tobytes()).hexdigest()[:8]},
        )

    # ------------------------------------------------------------------ store (de)serialisation
    def to_group(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and attributes for a store group (see docs/format.md, ``grids/<key>``)."""
        arrays = {
            "coords": self.coords,
            "tissue_fraction": self.tissue_fraction.astype(np.float32),
            "pen_fraction": self.pen_fraction.astype(np.float32),
            "section": self.section.astype(np.int32),
        }
        attrs = {
            "n_tiles": len(self),
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "stride": self.stride,
            "downsample": self.downsample,
            "mpp": self.mpp,
            "extent": self.extent,
            "bounds": list(self.bounds),
            "params": self.params,
            "coordinates": "level-0 pixels, top-left corner of each tile, origin top-left of the image",
        }
        return arrays, attrs

    @classmethod
    def from_group(cls, arrays: Any, attrs: dict[str, Any]) -> TileGrid:
        coords = np.asarray(arrays["coords"], dtype=np.int64).reshape(-1, 2)
        return cls(
            x=coords[:, 0].copy(),
            y=coords[:, 1].copy(),
            tissue_fraction=np.asarray(arrays["tissue_fraction"], dtype=np.float32),
            pen_fraction=np.asarray(arrays["pen_fraction"], dtype=np.float32),
            section=np.asarray(arrays["section"], dtype=np.int32),
            tile_size=int(attrs["tile_size"]),
            overlap=int(attrs["overlap"]),
            downsample=float(attrs["downsample"]),
            mpp=None if attrs.get("mpp") is None else float(attrs["mpp"]),
            bounds=tuple(int(v) for v in attrs["bounds"]),  # type: ignore[arg-type]
            params=dict(attrs.get("params", {})),
        )


def resolve_downsample(
    slide: Any,
    *,
    mpp: float | None = None,
    magnification: float | None = None,
    downsample: float | None = None,
) -> tuple[float, float | None]:
    """Level-0 pixels per output pixel and the output mpp, from exactly one of mpp, magnification, downsample.

    A magnification ``M`` is converted with the slide's mpp: with the scanning objective power ``P`` known,
    the output mpp is ``slide_mpp * P / M``; without it, the convention ``10 / M`` microns per pixel
    (20x = 0.5 µm/px, 40x = 0.25 µm/px) is used. Both need a trustworthy slide mpp (or ``--slide-mpp``).
    """
    given = sum(v is not None for v in (mpp, magnification, downsample))
    if given != 1:
        raise UsageError("give exactly one of mpp=, magnification= and downsample= for a tile grid.")
    if downsample is not None:
        if not downsample > 0:
            raise UsageError(f"downsample must be positive, got {downsample!r}.")
        slide_mpp = None if slide.mpp_problem() else slide.require_mpp()
        return float(downsample), None if slide_mpp is None else slide_mpp * downsample
    if magnification is not None:
        if not magnification > 0:
            raise UsageError(f"magnification must be positive, got {magnification!r}.")
        slide_mpp = slide.require_mpp()
        if slide.objective_power:
            mpp = slide_mpp * float(slide.objective_power) / magnification
        else:
            mpp = 10.0 / magnification
    assert mpp is not None
    return slide.downsample_for(mpp), float(mpp)


def _axis_starts(start: int, length: int, extent: float, step: float) -> np.ndarray:
    """Tile starts along one axis so that tiles cover ``[start, start + length)``; the last may overhang."""
    n = 1 if length <= extent else math.ceil((length - extent) / step - 1e-9) + 1
    return np.floor(start + np.arange(n) * step + 1e-9).astype(np.int64)


def box_fractions(mask: np.ndarray, x0: np.ndarray, y0: np.ndarray, w: float, h: float) -> np.ndarray:
    """Mean of ``mask`` over boxes with fractional corners (mask-pixel units), exactly, via an integral image.

    ``(x0, y0)`` are ``(n,)`` top-left corners, ``w`` and ``h`` the box size; parts outside the mask count as 0.
    """
    rows, cols = mask.shape
    if mask.dtype == bool or mask.dtype == np.uint8:
        import cv2

        # OpenCV's integral image: ~20x faster than two numpy cumsums on a 1250 x 940 mask
        sat = cv2.integral(np.ascontiguousarray(mask, dtype=np.uint8), sdepth=cv2.CV_64F)
    else:
        sat = np.zeros((rows + 1, cols + 1), np.float64)
        np.cumsum(np.cumsum(mask, axis=0, dtype=np.float64), axis=1, out=sat[1:, 1:])

    def integral(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        # the integral of a piecewise-constant image is bilinear inside each pixel: interpolate the table
        xs = np.clip(xs, 0, cols)
        ys = np.clip(ys, 0, rows)
        xi = np.minimum(np.floor(xs).astype(np.int64), cols - 1)
        yi = np.minimum(np.floor(ys).astype(np.int64), rows - 1)
        fx, fy = xs - xi, ys - yi
        s00, s01 = sat[yi, xi], sat[yi, xi + 1]
        s10, s11 = sat[yi + 1, xi], sat[yi + 1, xi + 1]
        return (s00 * (1 - fx) + s01 * fx) * (1 - fy) + (s10 * (1 - fx) + s11 * fx) * fy

    x1, y1 = x0 + w, y0 + h
    total = integral(x1, y1) - integral(x0, y1) - integral(x1, y0) + integral(x0, y0)
    return (total / (w * h)).astype(np.float32)


def make_grid(
    slide: Any,
    masks: Any = None,
    *,
    mpp: float | None = None,
    magnification: float | None = None,
    downsample: float | None = None,
    tile_size: int = 256,
    overlap: int = 0,
    min_tissue: float = 0.5,
) -> TileGrid:
    """Tile a slide's tissue at a resolution.

    Parameters
    ----------
    slide
        An open :class:`~eosin.slide.Slide`.
    masks
        The slide's :class:`~eosin.tissue.TissueMasks`; ``None`` tiles the whole image (all fractions 1).
    mpp, magnification, downsample
        The resolution of the tiles, exactly one: microns per pixel, magnification (converted with the slide's
        mpp, see :func:`resolve_downsample`), or level-0 pixels per output pixel.
    tile_size
        Tile width and height in output pixels.
    overlap
        Pixels shared by neighbouring tiles (``0 <= overlap < tile_size``).
    min_tissue
        Keep tiles whose tissue fraction is at least this (``0`` keeps every tile of the bounds).

    Returns
    -------
    TileGrid
        Tiles in grid order (row-major), each with its tissue fraction, pen fraction and cross-section.
    """
    if not isinstance(tile_size, (int, np.integer)) or tile_size < 1:
        raise UsageError(f"tile_size must be a positive whole number of pixels, got {tile_size!r}.")
    if not isinstance(overlap, (int, np.integer)) or not 0 <= overlap < tile_size:
        raise UsageError(
            f"overlap must be a whole number with 0 <= overlap < tile_size ({tile_size}), got {overlap!r}."
        )
    if not 0.0 <= min_tissue <= 1.0:
        raise UsageError(f"min_tissue is a fraction between 0 and 1, got {min_tissue!r}.")
    ds, out_mpp = resolve_downsample(slide, mpp=mpp, magnification=magnification, downsample=downsample)
    bx, by, bw, bh = (int(v) for v in slide.bounds)
    extent = tile_size * ds
    step = (tile_size - overlap) * ds
    xs = _axis_starts(bx, bw, extent, step)
    ys = _axis_starts(by, bh, extent, step)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    x, y = gx.ravel(), gy.ravel()

    params: dict[str, Any] = {
        "mpp": mpp,
        "magnification": magnification,
        "downsample": downsample,
        "tile_size": int(tile_size),
        "overlap": int(overlap),
        "min_tissue": float(min_tissue),
        "slide_mpp": None if slide.mpp_problem() else slide.require_mpp(),
    }
    if masks is None:
        tissue = np.ones(x.shape, np.float32)
        pen = np.zeros(x.shape, np.float32)
        section = np.zeros(x.shape, np.int32)
    else:
        mdx, mdy = _pair(masks.downsample)
        ox, oy = _pair(masks.origin)
        mx, my = (x - ox) / mdx, (y - oy) / mdy
        mw, mh = extent / mdx, extent / mdy
        tissue = box_fractions(masks.tissue, mx, my, mw, mh)
        keep = tissue >= min_tissue
        # pen fractions and sections only for the tiles kept
        x, y, mx, my, tissue = x[keep], y[keep], mx[keep], my[keep], tissue[keep]
        pen = box_fractions(masks.pen, mx, my, mw, mh) if masks.pen.any() else np.zeros(x.shape, np.float32)
        section = _tile_sections(masks.sections, mx, my, mw, mh, tissue)
        params["tissue"] = dict(getattr(masks, "params", {}) or {})
    keep = tissue >= min_tissue
    return TileGrid(
        x=x[keep],
        y=y[keep],
        tissue_fraction=tissue[keep],
        pen_fraction=pen[keep],
        section=section[keep],
        tile_size=int(tile_size),
        overlap=int(overlap),
        downsample=float(ds),
        mpp=out_mpp,
        bounds=(bx, by, bw, bh),
        params=params,
    )


def _pair(value: Any) -> tuple[float, float]:
    if np.ndim(value) == 0:
        return float(value), float(value)
    a, b = value
    return float(a), float(b)


def _tile_sections(
    sections: np.ndarray, mx: np.ndarray, my: np.ndarray, mw: float, mh: float, tissue: np.ndarray
) -> np.ndarray:
    """The cross-section covering most of each tile: the label at the tile centre, else the most common one."""
    rows, cols = sections.shape
    cx = np.clip(np.floor(mx + mw / 2).astype(np.int64), 0, cols - 1)
    cy = np.clip(np.floor(my + mh / 2).astype(np.int64), 0, rows - 1)
    out = sections[cy, cx].astype(np.int32)
    for i in np.flatnonzero((out == 0) & (tissue > 0)):
        x0, y0 = max(int(math.floor(mx[i])), 0), max(int(math.floor(my[i])), 0)
        x1, y1 = min(int(math.ceil(mx[i] + mw)), cols), min(int(math.ceil(my[i] + mh)), rows)
        patch = sections[y0:y1, x0:x1]
        patch = patch[patch > 0]
        if patch.size:
            values, counts = np.unique(patch, return_counts=True)
            out[i] = values[np.argmax(counts)]
    return out

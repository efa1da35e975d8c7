"""The one :class:`Slide` type every backend implements.

A backend implements only :meth:`Slide._read_level` (a region of one pyramid level, as RGB uint8) and fills the
metadata fields in its constructor. Everything resolution-aware lives here, once: choosing the best level for a
requested mpp, resampling with a proper filter, padding outside the image, thumbnails, and the mpp checks.

Coordinates are level-0 pixels with the origin at the top-left corner of the full image (QuPath's convention);
``bounds`` says which part of that image holds content (MIRAX and others crop to a region).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import ImplausibleResolutionError, MissingResolutionError, UsageError

__all__ = ["Slide", "Level", "PLAUSIBLE_MPP", "BACKGROUND"]

#: microns per pixel a real level-0 scan can have (from ~100x oil immersion to a 0.5x macro camera)
PLAUSIBLE_MPP = (0.05, 20.0)
#: value of pixels outside the image (glass is white)
BACKGROUND = 255


@dataclass(frozen=True)
class Level:
    """One pyramid level: its size in pixels and its downsample from level 0."""

    width: int
    height: int
    downsample: float


class _LazyImages(Mapping[str, np.ndarray]):
    """Associated images (label, macro, thumbnail) decoded on first access."""

    def __init__(self, loaders: Mapping[str, Callable[[], np.ndarray]]):
        self._loaders = dict(loaders)
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = self._loaders[name]()
        return self._cache[name]

    def __iter__(self):
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


@dataclass
class Slide:
    """A whole-slide image (or a plain image) opened by one backend.

    Use :func:`eosin.open_slide` rather than building one. Read with :meth:`read_region` and :meth:`thumbnail`;
    both return ``(rows, columns, 3)`` RGB ``uint8`` arrays.

    Attributes
    ----------
    path
        The file (or folder, for multi-file formats) opened.
    format
        What the file is: ``aperio``, ``hamamatsu``, ``mirax``, ``leica``, ``generic-tiff``, ``ome-tiff``,
        ``dicom``, ``qptiff``, ``png``, ``jpeg``, ``tiff``...
    backend
        Which reader opened it: ``openslide``, ``tiffslide``, ``dicom``, ``image``.
    levels
        The pyramid, finest first. ``levels[0]`` is the full-resolution image.
    mpp_x, mpp_y
        Microns per level-0 pixel as the file records them (``None`` when it does not), or the user's override.
    mpp_source
        ``"slide"`` when read from the file, ``"override"`` when given by the user, ``None`` when unknown.
    objective_power
        Scanning magnification recorded in the file, or ``None``.
    bounds
        ``(x, y, width, height)`` of the region holding content, in level-0 pixels.
    channel_names
        Names of the channels: ``("R", "G", "B")`` for brightfield; fluorescence marker names otherwise.
    properties
        The raw metadata the backend read, as strings.
    """

    path: Path
    format: str
    backend: str
    levels: list[Level]
    mpp_x: float | None = None
    mpp_y: float | None = None
    mpp_source: str | None = None
    objective_power: float | None = None
    bounds: tuple[int, int, int, int] | None = None
    channel_names: tuple[str, ...] = ("R", "G", "B")
    properties: dict[str, str] = field(default_factory=dict)
    associated_images: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: arguments that reopen this slide (in a worker process, for instance)
    open_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.bounds is None:
            self.bounds = (0, 0, self.width, self.height)
        if not isinstance(self.associated_images, _LazyImages):
            self.associated_images = _LazyImages(
                {
                    k: (lambda v=v: v) if isinstance(v, np.ndarray) else v
                    for k, v in self.associated_images.items()
                }
            )

    # ---------------------------------------------------------------- backend hook
    def _read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Read ``(height, width, 3)`` RGB uint8 from ``level``; ``(x, y)`` is the top-left in level-0 pixels.

        Backends implement this. The region lies inside the level (the caller clips and pads).
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release the file handles."""

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self):
        from eosin.slide._open import open_slide

        return (_reopen, (open_slide, os.fspath(self.path), self.open_kwargs))

    def __repr__(self) -> str:
        mpp = "unknown" if self.mpp_x is None else f"{self.mpp_x:.4g}x{self.mpp_y:.4g}"
        return (
            f"Slide({str(self.path)!r}, format={self.format!r}, backend={self.backend!r}, "
            f"size={self.width}x{self.height}, levels={len(self.levels)}, mpp={mpp})"
        )

    # ---------------------------------------------------------------- metadata
    @property
    def width(self) -> int:
        return self.levels[0].width

    @property
    def height(self) -> int:
        return self.levels[0].height

    @property
    def dimensions(self) -> tuple[int, int]:
        """``(width, height)`` of level 0."""
        return (self.width, self.height)

    @property
    def level_count(self) -> int:
        return len(self.levels)

    @property
    def level_dimensions(self) -> list[tuple[int, int]]:
        return [(lv.width, lv.height) for lv in self.levels]

    @property
    def level_downsamples(self) -> list[float]:
        return [lv.downsample for lv in self.levels]

    @property
    def mpp(self) -> tuple[float | None, float | None]:
        """``(mpp_x, mpp_y)`` in microns per level-0 pixel, ``None`` where unknown."""
        return (self.mpp_x, self.mpp_y)

    @property
    def is_brightfield(self) -> bool:
        return tuple(self.channel_names) == ("R", "G", "B")

    def mpp_problem(self) -> str | None:
        """Why this slide's mpp cannot be used (``"missing"`` or ``"implausible"``), or ``None`` when it can."""
        if self.mpp_x is None or self.mpp_y is None:
            return "missing"
        if self.mpp_source == "override":
            return None
        lo, hi = PLAUSIBLE_MPP
        if not (lo <= self.mpp_x <= hi and lo <= self.mpp_y <= hi):
            return "implausible"
        return None

    def require_mpp(self) -> float:
        """The level-0 mpp for resolution-based work (the mean of x and y).

        Raises
        ------
        MissingResolutionError, ImplausibleResolutionError
            When the slide does not record a trustworthy mpp and none was given with ``slide_mpp=``
            (``--slide-mpp`` on the command line).
        """
        problem = self.mpp_problem()
        fix = (
            "give the true level-0 resolution with --slide-mpp X (Python: open_slide(path, slide_mpp=X)), "
            "e.g. 0.25 for a 40x scan or 0.5 for 20x"
        )
        if problem == "missing":
            raise MissingResolutionError(
                "the slide does not record its microns per pixel (mpp).", path=self.path, fix=fix
            )
        if problem == "implausible":
            lo, hi = PLAUSIBLE_MPP
            raise ImplausibleResolutionError(
                f"the slide claims {self.mpp_x:.4g} x {self.mpp_y:.4g} microns per pixel, outside the plausible "
                f"range {lo}-{hi} for a scanned slide.",
                path=self.path,
                fix=fix,
            )
        return (self.mpp_x + self.mpp_y) / 2.0  # type: ignore[operator]

    # ---------------------------------------------------------------- reading
    def best_level(self, downsample: float) -> int:
        """The coarsest level whose downsample does not exceed ``downsample`` (with a 1 % tolerance)."""
        best = 0
        for i, lv in enumerate(self.levels):
            if lv.downsample <= downsample * 1.01:
                if lv.downsample > self.levels[best].downsample:
                    best = i
        return best

    def downsample_for(self, mpp: float) -> float:
        """The downsample from level 0 that gives ``mpp`` microns per pixel."""
        if not (mpp > 0 and math.isfinite(mpp)):
            raise UsageError(f"mpp must be a positive number, got {mpp!r}.")
        return mpp / self.require_mpp()

    def read_region(
        self,
        location: tuple[int, int],
        size: tuple[int, int],
        *,
        mpp: float | None = None,
        level: int | None = None,
        downsample: float | None = None,
    ) -> np.ndarray:
        """Read a region as ``(rows, columns, 3)`` RGB uint8.

        Parameters
        ----------
        location
            ``(x, y)`` of the top-left corner in level-0 pixels.
        size
            ``(width, height)`` of the output in output pixels.
        mpp, level, downsample
            The output resolution, at most one of them: microns per pixel (needs a trustworthy slide mpp),
            a pyramid level, or a downsample from level 0. Default: level 0.

        The best pyramid level is read (never coarser than asked) and resampled with area averaging when
        shrinking, bicubic when enlarging. Pixels outside the image are white.
        """
        given = [v is not None for v in (mpp, level, downsample)]
        if sum(given) > 1:
            raise UsageError("give at most one of mpp=, level= and downsample= to read_region.")
        if mpp is not None:
            downsample = self.downsample_for(mpp)
        elif level is not None:
            if not 0 <= level < len(self.levels):
                raise UsageError(
                    f"level {level} does not exist; the slide has levels 0-{len(self.levels) - 1}."
                )
            downsample = self.levels[level].downsample
        elif downsample is None:
            downsample = 1.0
        if downsample <= 0:
            raise UsageError(f"downsample must be positive, got {downsample!r}.")
        out_w, out_h = int(size[0]), int(size[1])
        if out_w <= 0 or out_h <= 0:
            raise UsageError(f"region size must be positive, got {size!r}.")
        x0, y0 = location
        lvl = level if level is not None else self.best_level(downsample)
        lv_ds = self.levels[lvl].downsample
        scale = downsample / lv_ds  # output pixel size in level pixels
        # the region in level pixels (float), then the integer window we actually read
        lx0, ly0 = x0 / lv_ds, y0 / lv_ds
        lw, lh = out_w * scale, out_h * scale
        ix0, iy0 = math.floor(lx0), math.floor(ly0)
        ix1, iy1 = math.ceil(lx0 + lw - 1e-9), math.ceil(ly0 + lh - 1e-9)
        self._check_window(lvl, ix1 - ix0, iy1 - iy0)
        window = self._read_padded(lvl, ix0, iy0, ix1 - ix0, iy1 - iy0)
        if window.shape[1] == out_w and window.shape[0] == out_h:
            return window
        return _resample(window, (lx0 - ix0, ly0 - iy0, lw, lh), out_w, out_h)

    def _check_window(self, level: int, w: int, h: int) -> None:
        """Refuse to decode a window above ``EOSIN_MAX_IMAGE_PIXELS`` at once (a coarse read of a slide without
        a pyramid, or a header declaring a forged size)."""
        from eosin._limits import max_image_pixels

        if w * h > max_image_pixels():
            from eosin.errors import InputTooLargeError

            raise InputTooLargeError(
                f"this read needs {w:,} x {h:,} pixels of level {level} decoded at once "
                f"({w * h * 3 / 1e9:,.1f} GB), above the limit of {max_image_pixels():,} pixels "
                "(the slide has no pyramid level near the resolution asked for, or its header declares a forged size).",
                path=self.path,
                fix="convert the slide to a pyramidal tiled TIFF (vips tiffsave --tile --pyramid), or raise "
                "EOSIN_MAX_IMAGE_PIXELS if the memory is there",
            )

    def _read_padded(self, level: int, ix: int, iy: int, w: int, h: int) -> np.ndarray:
        """Read a window of ``level`` in level pixels, white outside the level."""
        lv = self.levels[level]
        out = None
        cx0, cy0 = max(ix, 0), max(iy, 0)
        cx1, cy1 = min(ix + w, lv.width), min(iy + h, lv.height)
        if cx0 == ix and cy0 == iy and cx1 == ix + w and cy1 == iy + h:
            return self._read_level(level, round(ix * lv.downsample), round(iy * lv.downsample), w, h)
        out = np.full((h, w, 3), BACKGROUND, np.uint8)
        if cx1 > cx0 and cy1 > cy0:
            part = self._read_level(
                level, round(cx0 * lv.downsample), round(cy0 * lv.downsample), cx1 - cx0, cy1 - cy0
            )
            out[cy0 - iy : cy1 - iy, cx0 - ix : cx1 - ix] = part
        return out

    def thumbnail(
        self, *, mpp: float | None = None, downsample: float | None = None, max_size: int | None = None
    ) -> np.ndarray:
        """The whole image (its ``bounds``) as ``(rows, columns, 3)`` RGB uint8.

        Give one of ``mpp`` (microns per pixel), ``downsample`` (from level 0) or ``max_size`` (pixels of the
        longer side; default 1024).
        """
        if sum(v is not None for v in (mpp, downsample, max_size)) > 1:
            raise UsageError("give at most one of mpp=, downsample= and max_size= to thumbnail.")
        bx, by, bw, bh = self.bounds  # type: ignore[misc]
        if mpp is not None:
            downsample = self.downsample_for(mpp)
        elif downsample is None:
            downsample = max(bw, bh) / float(max_size or 1024)
        downsample = max(downsample, 1e-6)
        out_w = max(1, round(bw / downsample))
        out_h = max(1, round(bh / downsample))
        return self.read_region((bx, by), (out_w, out_h), downsample=downsample)


def _reopen(open_slide, path, kwargs):
    return open_slide(path, **kwargs)


def _resample(
    window: np.ndarray, box: tuple[float, float, float, float], out_w: int, out_h: int
) -> np.ndarray:
    """Resample the sub-pixel box ``(x, y, w, h)`` of ``window`` to ``out_w`` x ``out_h``."""
    import cv2

    bx, by, bw, bh = box
    shrinking = bw >= out_w and bh >= out_h
    if (
        abs(bx) < 1e-6
        and abs(by) < 1e-6
        and abs(bw - window.shape[1]) < 1e-6
        and abs(bh - window.shape[0]) < 1e-6
    ):
        interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
        return cv2.resize(window, (out_w, out_h), interpolation=interp)
    if shrinking:
        # area averaging handles sub-pixel offsets poorly; crop to whole pixels first (error < 1 source pixel)
        x0, y0 = int(round(bx)), int(round(by))
        x1, y1 = max(x0 + 1, int(round(bx + bw))), max(y0 + 1, int(round(by + bh)))
        return cv2.resize(window[y0:y1, x0:x1], (out_w, out_h), interpolation=cv2.INTER_AREA)
    sx, sy = bw / out_w, bh / out_h
    matrix = np.array([[sx, 0, bx + 0.5 * sx - 0.5], [0, sy, by + 0.5 * sy - 0.5]], np.float64)
    return cv2.warpAffine(
        window,
        matrix,
        (out_w, out_h),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )

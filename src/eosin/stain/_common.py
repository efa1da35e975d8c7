"""What the stain methods share: input checking, optical density, the glass mask and the fit/transform base."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from eosin._params import Params
from eosin.errors import UsageError

__all__ = [
    "StainNormalizer",
    "as_batch",
    "glass_mask",
    "keep_glass",
    "od_lut",
    "target_pixels",
    "tissue_or_all",
]


#: stained (not glass) pixels a stain target needs; fewer is refused (16 x 16)
MIN_TARGET_PIXELS = 256


def as_batch(images: Any) -> tuple[np.ndarray, bool]:
    """Check ``images`` (``(rows, cols, 3)`` or ``(n, rows, cols, 3)`` uint8); return a 4-d view and whether it was one.

    Raises
    ------
    UsageError
        When the array is not uint8 RGB.
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise UsageError(
            f"stain methods take uint8 RGB images, got dtype {arr.dtype}.",
            fix="convert with skimage.util.img_as_ubyte or pass the tiles as read (uint8)",
        )
    if arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise UsageError(
            f"expected an image (rows, cols, 3) or a batch (n, rows, cols, 3), got shape {arr.shape}.",
            fix="drop the alpha channel (image[..., :3]) or stack the tiles into one array",
        )
    return (arr[None], True) if arr.ndim == 3 else (arr, False)


def target_pixels(target: Any) -> np.ndarray:
    """All pixels of a target as ``(n_pixels, 3)`` uint8: one image, a batch, or a list of images of any sizes."""
    if isinstance(target, Sequence) and not isinstance(target, np.ndarray):
        if not target:
            raise UsageError(
                "the stain target is an empty list of images.", fix="pass at least one target image"
            )
        return np.concatenate([as_batch(t)[0].reshape(-1, 3) for t in target])
    return as_batch(target)[0].reshape(-1, 3)


def od_lut(io: float) -> np.ndarray:
    """Optical density of each uint8 value, ``-log((v + 1) / io)`` as float32 (256 entries)."""
    return (-np.log((np.arange(256, dtype=np.float64) + 1.0) / io)).astype(np.float32)


def glass_mask(rgb: np.ndarray, *, min_brightness: int = 200, max_saturation: float = 0.12) -> np.ndarray:
    """Bright, nearly grey pixels: the glass (background) around and between tissue.

    Parameters
    ----------
    rgb
        ``(..., 3)`` uint8.
    min_brightness
        A glass pixel's brightest channel is at least this.
    max_saturation
        ... and its channels differ by at most this fraction of the brightest one (HSV saturation).

    Returns
    -------
    numpy.ndarray
        bool, ``rgb.shape[:-1]``.
    """
    return _glass_u8(rgb, min_brightness, max_saturation).reshape(rgb.shape[:-1]) > 0


def _glass_u8(rgb: np.ndarray, min_brightness: int = 200, max_saturation: float = 0.12) -> np.ndarray:
    """:func:`glass_mask` as an OpenCV 0/255 mask of the image(s) flattened to ``(rows, cols)``."""
    rgb = np.ascontiguousarray(rgb)
    flat = rgb.reshape(-1, rgb.shape[-2], 3) if rgb.ndim >= 3 else rgb.reshape(1, -1, 3)  # an OpenCV image
    return glass_and_max(flat, min_brightness, max_saturation)[0]


def glass_and_max(
    flat: np.ndarray,
    min_brightness: int = 200,
    max_saturation: float = 0.12,
    *,
    out: np.ndarray | None = None,
    scratch: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`glass_mask` (0/255) and the brightest channel ``max(R, G, B)`` of an OpenCV RGB image.

    OpenCV's 8-bit HSV saturation depends only on ``V = max(R, G, B)`` and the spread ``max - min``, rising with
    the spread, so glass is ``spread < limit[V]`` (:func:`_glass_limits`): six byte-plane passes instead of a
    full HSV conversion (identical on all 2^24 colours, tested).

    ``out`` (``flat.shape[:2]`` uint8, for the mask) and ``scratch`` (``(4, *flat.shape[:2])`` uint8; the
    brightest channel is returned in ``scratch[3]``) are optional buffers: with both, nothing is allocated, so a
    loop over tiles keeps its planes in cache and touches no new memory pages (which, on a batch of tiles, costs
    more than the passes themselves).
    """
    r, g, b, high = np.empty((4, *flat.shape[:2]), np.uint8) if scratch is None else scratch
    cv2.split(flat, [r, g, b])
    cv2.max(cv2.max(r, g, dst=high), b, dst=high)
    if max_saturation >= 1:  # any saturation: glass is bright (the limit for V = 255 would be 256)
        return cv2.threshold(high, min_brightness - 1, 255, cv2.THRESH_BINARY, dst=out)[1], high
    spread = cv2.subtract(high, cv2.min(cv2.min(r, g, dst=r), b, dst=r), dst=r)
    limits = cv2.LUT(high, _glass_limits(min_brightness, max_saturation), dst=g)
    return cv2.compare(spread, limits, cv2.CMP_LT, dst=out), high


@functools.cache
def _glass_limits(min_brightness: int, max_saturation: float) -> np.ndarray:
    """For each brightness ``V``: how many spreads ``max - min`` (from 0 up) make a glass pixel, read off OpenCV's
    own HSV conversion (``S <= max_saturation * 255`` and ``V >= min_brightness``) so that both agree exactly."""
    v, spread = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    low = np.clip(v - spread, 0, 255)
    hsv = cv2.cvtColor(np.stack([v, low, low], axis=-1).astype(np.uint8), cv2.COLOR_RGB2HSV)
    glass = cv2.inRange(hsv, (0, 0, min_brightness), (255, int(max_saturation * 255), 255)) > 0
    glass &= spread <= v
    limits = glass.sum(axis=1)
    if not all(glass[i, : limits[i]].all() for i in range(256)):  # pragma: no cover - OpenCV's S is monotone
        raise RuntimeError("OpenCV's HSV saturation is not monotone in the channel spread")
    return limits.astype(np.uint8)


def keep_glass(out: np.ndarray, original: np.ndarray, glass: np.ndarray | None = None) -> None:
    """Put the glass pixels of ``original`` back into ``out`` (same shape, uint8), in place.

    ``glass`` is the mask if already computed (any shape with the pixel count; bool or 0/255).
    """
    rows = out.reshape(-1, out.shape[-2], 3)  # a view: OpenCV writes through it
    mask = _glass_u8(original) if glass is None else glass.reshape(rows.shape[:2]).view(np.uint8)
    cv2.copyTo(np.ascontiguousarray(original).reshape(rows.shape), mask, rows)


class StainNormalizer(Params):
    """Base of the normalizers: keyword-only parameters, ``fit`` on a target, ``transform`` image batches.

    Subclasses implement ``_fit_pixels(pixels)`` (``(n, 3)`` uint8 target pixels) and ``_transform_one(pixels)``
    (one image's pixels in, the same shape uint8 out), or override :meth:`transform` for a batched path.
    """

    name: str = ""
    _fitted: tuple[str, ...] = ()

    def fit(self, target: Any) -> StainNormalizer:
        """Learn the target's stain appearance.

        Parameters
        ----------
        target
            One ``(rows, cols, 3)`` uint8 image, a batch ``(n, rows, cols, 3)``, or a list of images (pooled).

        Returns
        -------
        StainNormalizer
            ``self``.
        """
        pixels = target_pixels(target)
        stained = pixels.shape[0] - int(np.count_nonzero(_glass_u8(pixels)))
        if stained < MIN_TARGET_PIXELS:
            raise UsageError(
                f"the stain target has {stained:,} stained pixel(s) of {pixels.shape[0]:,}: no stain to learn "
                f"(at least {MIN_TARGET_PIXELS} pixels that are not glass are needed; a blank, white or tiny image "
                "would bleach every image normalized to it).",
                fix="give a target image of stained tissue (e.g. a 500 x 500 px H&E region)",
            )
        self._fit_pixels(pixels)
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Normalize ``(rows, cols, 3)`` or ``(n, rows, cols, 3)`` uint8 images to the target; same shape out."""
        self._check_fitted()
        batch, single = as_batch(images)
        out = np.empty_like(batch)
        for i, image in enumerate(batch):
            out[i] = self._transform_one(image.reshape(-1, 3)).reshape(image.shape)
        if getattr(self, "mask_background", False):  # glass keeps its exact colour
            keep_glass(out, batch)
        return out[0] if single else out

    def fit_transform(self, target: Any) -> np.ndarray:
        """``fit(target)`` then ``transform(target)`` (an array target only)."""
        return self.fit(target).transform(target)

    @property
    def _fit_hint(self) -> str:
        return f"call .fit(target_image) before .transform(); it learns {', '.join(self._fitted)}"

    def _fit_pixels(self, pixels: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _transform_one(self, pixels: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def tissue_or_all(mask: np.ndarray) -> np.ndarray:
    """``mask`` unless it selects fewer than 16 pixels, then everything (an all-glass image keeps working)."""
    return mask if np.count_nonzero(mask) >= 16 else np.ones_like(mask)

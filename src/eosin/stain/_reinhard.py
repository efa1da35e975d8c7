"""Reinhard colour transfer: match each image's LAB channel means and standard deviations to the target's."""

from __future__ import annotations

import cv2
import numpy as np

from eosin.stain._common import StainNormalizer, as_batch, glass_mask, keep_glass, tissue_or_all

__all__ = ["ReinhardNormalizer"]

# OpenCV's 8-bit LAB codes: L * 255 / 100, a + 128, b + 128.
_CODE_SCALE = np.array([2.55, 1.0, 1.0])
_CODE_OFFSET = np.array([0.0, 128.0, 128.0])


class ReinhardNormalizer(StainNormalizer):
    """Reinhard et al. (2001) colour transfer in CIE LAB, per image.

    Each image's LAB channels are standardized (its own mean and standard deviation) and given the target's
    mean and standard deviation. With ``mask_background`` the statistics, of target and images alike, are taken
    over tissue only (glass excluded, see :func:`eosin.stain._common.glass_mask`) and glass pixels are left as they
    are, as HistomicsTK does; without it every pixel counts and changes, as in torchstain and TIAToolbox.

    The conversion is OpenCV's 8-bit LAB (as TIAToolbox's), and the per-channel affine map is applied as a 256-entry
    lookup table per image, so a batch costs two colour conversions and one table look-up per pixel.

    Parameters
    ----------
    mask_background
        Ignore glass when computing statistics and leave it unchanged.

    Attributes
    ----------
    means_, stds_ : numpy.ndarray
        ``(3,)`` the target's L (0-100), a, b means and standard deviations.

    Examples
    --------
    >>> norm = ReinhardNormalizer().fit(target)  # doctest: +SKIP
    >>> tiles = norm.transform(tiles)  # (n, rows, cols, 3) uint8 in and out  # doctest: +SKIP
    """

    name = "reinhard"
    _fitted = ("means_", "stds_")

    def __init__(self, *, mask_background: bool = True):
        self.mask_background = mask_background

    def _fit_pixels(self, pixels: np.ndarray) -> None:
        lab = cv2.cvtColor(np.ascontiguousarray(pixels[None]), cv2.COLOR_RGB2LAB)
        mask = tissue_or_all(~glass_mask(pixels)) if self.mask_background else None
        mean, std = _lab_stats(lab, None if mask is None else mask[None])
        self.means_ = (mean - _CODE_OFFSET) / _CODE_SCALE
        self.stds_ = std / _CODE_SCALE

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Normalize ``(rows, cols, 3)`` or ``(n, rows, cols, 3)`` uint8 images; same shape out."""
        self._check_fitted()
        batch, single = as_batch(images)
        n, rows, cols, _ = batch.shape
        lab = cv2.cvtColor(np.ascontiguousarray(batch).reshape(n * rows, cols, 3), cv2.COLOR_RGB2LAB)
        lab = lab.reshape(batch.shape)
        glass = glass_mask(batch) if self.mask_background else None
        t_mean = self.means_ * _CODE_SCALE + _CODE_OFFSET
        t_std = self.stds_ * _CODE_SCALE
        codes = np.arange(256, dtype=np.float64)[:, None]
        for i in range(n):
            mask = None if glass is None else tissue_or_all(~glass[i])
            mean, std = _lab_stats(lab[i], mask)
            lut = (codes - mean) * (t_std / np.maximum(std, 1e-6)) + t_mean
            lut = np.clip(np.rint(lut), 0, 255).astype(np.uint8)[:, None, :]  # (256, 1, 3) for cv2.LUT
            lab[i] = cv2.LUT(lab[i], lut)
        out = cv2.cvtColor(lab.reshape(n * rows, cols, 3), cv2.COLOR_LAB2RGB).reshape(batch.shape)
        if glass is not None:  # glass keeps its exact colour
            keep_glass(out, batch, glass)
        return out[0] if single else out


def _lab_stats(lab: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel means and standard deviations of 8-bit LAB codes (``mask``: the pixels to count)."""
    mean, std = cv2.meanStdDev(lab, mask=None if mask is None else mask.astype(np.uint8))
    return mean[:, 0], std[:, 0]

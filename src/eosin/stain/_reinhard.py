"""Reinhard colour transfer: match each image's LAB channel means and standard deviations to the target's."""

from __future__ import annotations

import cv2
import numpy as np

from eosin.stain._common import StainNormalizer, as_batch, glass_and_max, glass_mask, tissue_or_all

__all__ = ["ReinhardNormalizer"]

# OpenCV's 8-bit LAB codes: L * 255 / 100, a + 128, b + 128.
_CODE_SCALE = np.array([2.55, 1.0, 1.0])
_CODE_OFFSET = np.array([0.0, 128.0, 128.0])
_CODES = np.arange(256, dtype=np.float64)[:, None]  # (256, 1)
_RAMP = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)  # every code in each channel


class ReinhardNormalizer(StainNormalizer):
    """Reinhard et al. (2001) colour transfer in CIE LAB, per image.

    Each image's LAB channels are standardized (its own mean and standard deviation) and given the target's
    mean and standard deviation. With ``mask_background`` the statistics, of target and images alike, are taken
    over tissue only (glass excluded, see :func:`eosin.stain._common.glass_mask`) and glass pixels are left as they
    are, as HistomicsTK does; without it every pixel counts and changes, as in torchstain and TIAToolbox.

    The conversion is OpenCV's 8-bit LAB (as TIAToolbox's). A batch is worked through in chunks of a few images, in
    buffers reused from chunk to chunk: both colour conversions of a chunk at once, the statistics from exact
    per-channel sums, and the per-channel affine map (rounded, as a 256-entry table would give) as one
    ``cv2.transform`` per image.

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
    _chunk_pixels = 1 << 18  # image pixels converted at once

    def __init__(self, *, mask_background: bool = True):
        self.mask_background = mask_background

    def _fit_pixels(self, pixels: np.ndarray) -> None:
        lab = cv2.cvtColor(np.ascontiguousarray(pixels[None]), cv2.COLOR_RGB2LAB)
        mask = tissue_or_all(~glass_mask(pixels)) if self.mask_background else None
        n, sums, squares = _lab_sums(lab, None if mask is None else mask[None].view(np.uint8))
        mean, std = _moments(np.asarray(n, np.float64), np.array(sums), np.array(squares))
        self.means_ = (mean - _CODE_OFFSET) / _CODE_SCALE
        self.stds_ = std / _CODE_SCALE

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Normalize ``(rows, cols, 3)`` or ``(n, rows, cols, 3)`` uint8 images; same shape out.

        Chunks of ``_chunk_pixels`` (4 tiles of 256 px): converted to LAB at once (OpenCV spreads a conversion this
        large over its threads; a single tile stays on one), glass masks, each image's statistics and code map,
        back to RGB at once, glass put back; in buffers reused from chunk to chunk, which stay in cache.
        """
        self._check_fitted()
        batch, single = as_batch(images)
        batch = np.ascontiguousarray(batch)
        n, rows, cols, _ = batch.shape
        t_mean = self.means_ * _CODE_SCALE + _CODE_OFFSET
        t_std = self.stds_ * _CODE_SCALE
        size = max(1, min(n, self._chunk_pixels // max(rows * cols, 1)))
        lab, shifted = np.empty((2, size, rows, cols, 3), np.uint8)
        glass = np.empty((size, rows, cols), np.uint8)
        scratch = np.empty((4, size * rows, cols), np.uint8)
        tissue = np.empty((rows, cols), np.uint8)
        planes = np.empty((3, rows, cols), np.uint8)
        out = np.empty_like(batch)
        for start in range(0, n, size):
            images = batch[start : start + size]
            k = len(images)
            flat, dst = images.reshape(-1, cols, 3), out[start : start + k].reshape(-1, cols, 3)
            cv2.cvtColor(flat, cv2.COLOR_RGB2LAB, dst=lab[:k].reshape(-1, cols, 3))
            if self.mask_background:
                glass_and_max(flat, out=glass[:k].reshape(-1, cols), scratch=scratch[:, : k * rows])
            counts, sums, squares = np.empty(k), np.empty((k, 3)), np.empty((k, 3))
            for i in range(k):
                mask = None
                if self.mask_background:  # tissue only, unless it is fewer than 16 pixels
                    cv2.bitwise_not(glass[i], dst=tissue)
                    mask = tissue if cv2.countNonZero(tissue) >= 16 else None
                counts[i], sums[i], squares[i] = _lab_sums(lab[i], mask, planes)
            mean, std = _moments(counts, sums, squares)
            _map_codes(lab[:k], shifted[:k], t_std / np.maximum(std, 1e-6), mean, t_mean)
            cv2.cvtColor(shifted[:k].reshape(-1, cols, 3), cv2.COLOR_LAB2RGB, dst=dst)
            if self.mask_background:  # glass keeps its exact colour
                cv2.copyTo(flat, glass[:k].reshape(-1, cols), dst)
        return out[0] if single else out


def _map_codes(
    lab: np.ndarray, out: np.ndarray, gain: np.ndarray, mean: np.ndarray, t_mean: np.ndarray
) -> None:
    """``out[i] = clip(rint((lab[i] - mean[i]) * gain[i] + t_mean))`` per channel, for images ``lab`` ``(k, ...)``.

    As one ``cv2.transform`` per image (a diagonal 3x4 map, 6x faster than a 3-channel ``cv2.LUT``) when it gives
    the float64 table on every code (its float32 arithmetic can differ at a rounding tie); else by the table.
    """
    tables = np.clip(np.rint((_CODES - mean[:, None]) * gain[:, None] + t_mean), 0, 255).astype(np.uint8)
    matrices = np.zeros((len(lab), 3, 4))
    matrices[:, (0, 1, 2), (0, 1, 2)] = gain
    matrices[:, :, 3] = t_mean - mean * gain
    ramps = np.empty((len(lab), 256, 1, 3), np.uint8)
    for i, matrix in enumerate(matrices):
        cv2.transform(_RAMP, matrix, dst=ramps[i])
    exact = (ramps[:, :, 0] == tables).all(axis=(1, 2))
    for i, image in enumerate(lab):
        if exact[i]:
            cv2.transform(image, matrices[i], dst=out[i])
        else:
            cv2.LUT(image, tables[i][:, None], dst=out[i])


def _lab_sums(lab: np.ndarray, mask: np.ndarray | None, planes: np.ndarray | None = None) -> tuple:
    """The pixel count, and each channel's sum and sum of squares (OpenCV norms, exact), of the 8-bit codes of
    ``lab`` (an OpenCV image) under ``mask`` (uint8, the pixels to count; ``None``: all). ``planes``: an optional
    ``(3, rows, cols)`` uint8 buffer for the channels."""
    channels = cv2.split(lab, None if planes is None else list(planes))
    n = lab.shape[0] * lab.shape[1] if mask is None else cv2.countNonZero(mask)
    return (
        n,
        [cv2.norm(c, cv2.NORM_L1, mask=mask) for c in channels],
        [cv2.norm(c, cv2.NORM_L2SQR, mask=mask) for c in channels],
    )


def _moments(counts: np.ndarray, sums: np.ndarray, squares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and standard deviations ``(..., 3)`` from :func:`_lab_sums`, as ``cv2.meanStdDev`` computes them
    (``mean = sum / n``, ``std = sqrt(max(sumsq / n - mean^2, 0))``), in a third of its time."""
    scale = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)[..., None]
    mean = sums * scale
    # NORM_L2SQR may be an L2 norm squared (IPP): off the exact integer by far less than 0.5
    return mean, np.sqrt(np.maximum(np.rint(squares) * scale - mean * mean, 0.0))

"""Macenko stain normalization: H and E optical-density vectors from the angular extremes of the OD plane."""

from __future__ import annotations

import cv2
import numpy as np

from eosin.stain._common import StainNormalizer, as_batch, glass_and_max, od_lut

__all__ = ["MacenkoNormalizer", "macenko_stains"]


def macenko_stains(od: np.ndarray, *, alpha: float = 1.0) -> np.ndarray:
    """Haematoxylin and eosin OD vectors of tissue pixels by Macenko et al. (2009).

    The pixels are projected on the plane of the two main principal directions of their OD; the stain vectors are
    the directions at the ``alpha`` and ``100 - alpha`` percentiles of the angle in that plane.

    Parameters
    ----------
    od
        ``(n, 3)`` float optical densities of tissue pixels, or ``(b, n, 3)`` for ``b`` images at once.
    alpha
        Percentile (0-50) of the angular extremes; 1 is robust to a few outliers.

    Returns
    -------
    numpy.ndarray
        ``(2, 3)`` (or ``(b, 2, 3)``) unit rows: haematoxylin (larger red OD, it looks blue) first, then eosin.
    """
    od = np.asarray(od, dtype=np.float32)
    one = od.ndim == 2
    od = od[None] if one else od
    n = od.shape[1]
    # od.sum(axis=1): the same sequential sums over the pixels, 3x faster with the pixels as the outer axis
    mean = np.ascontiguousarray(np.swapaxes(od, 0, 1)).sum(axis=0) / n
    cov = np.swapaxes(od, 1, 2) @ od / n - mean[:, :, None] * mean[:, None, :]
    _, vecs = np.linalg.eigh(cov.astype(np.float64))
    plane = vecs[:, :, 1:3].astype(np.float32)  # second and first principal directions
    plane[:, :, 1] *= np.where(plane[:, :, 1].sum(axis=1) < 0, -1, 1)[:, None]  # signs are arbitrary: OD > 0
    proj = od @ plane
    phi = np.arctan2(proj[:, :, 1], proj[:, :, 0])
    lo, hi = _percentile(phi, [alpha, 100 - alpha])
    v_lo = (plane @ np.stack([np.cos(lo), np.sin(lo)], axis=1)[:, :, None])[:, :, 0]
    v_hi = (plane @ np.stack([np.cos(hi), np.sin(hi)], axis=1)[:, :, None])[:, :, 0]
    lo_first = (v_lo[:, 0] > v_hi[:, 0])[:, None]
    stains = np.stack([np.where(lo_first, v_lo, v_hi), np.where(lo_first, v_hi, v_lo)], axis=1)
    stains /= np.linalg.norm(stains, axis=2, keepdims=True)
    return stains[0] if one else stains


class MacenkoNormalizer(StainNormalizer):
    """Macenko et al. (2009) stain normalization, per image.

    For the target and for every image: optical density ``-log((I + 1) / io)``; pixels whose OD is below ``beta``
    in any channel (glass, very pale) are left out of the estimation, which uses a sample of ``max_pixels``; the H and E vectors come from
    :func:`macenko_stains`; concentrations are the least-squares solution for all pixels (a precomputed 2x3
    pseudo-inverse), scaled so that their 99th percentile (over tissue) matches the target's, and recomposed with
    the target's vectors. This follows torchstain's numpy implementation; differences are documented in
    ``docs/stain.md`` (rounding rather than truncation, and by default percentiles over tissue rather than all pixels).

    Parameters
    ----------
    alpha
        Angular percentile for the stain vectors.
    beta
        OD threshold below which a pixel is background.
    io
        Transmitted light intensity (the glass brightness).
    max_pixels
        Tissue pixels per image (an even stride, so results do not depend on the batch) from which its stain
        vectors and percentiles are estimated; ``None`` takes them all, as torchstain does. The target always
        uses all of its tissue.
    tissue_percentiles
        Take the concentrations' 99th percentiles over tissue pixels (default), so that glass does not lower them;
        ``False`` takes them over all pixels, as torchstain and TIAToolbox do.
    mask_background
        Leave glass (:func:`eosin.stain.glass_mask`) exactly as it is; otherwise its faint OD is rescaled with
        the tissue's and tints it. ``False`` does as torchstain and TIAToolbox.

    Attributes
    ----------
    stain_matrix_ : numpy.ndarray
        ``(2, 3)`` the target's unit H and E OD vectors (rows).
    max_concentrations_ : numpy.ndarray
        ``(2,)`` the 99th percentiles of the target's H and E concentrations over tissue.
    """

    name = "macenko"
    _fitted = ("stain_matrix_", "max_concentrations_")

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        beta: float = 0.15,
        io: float = 240.0,
        max_pixels: int | None = 4096,
        tissue_percentiles: bool = True,
        mask_background: bool = True,
    ):
        self.alpha = alpha
        self.beta = beta
        self.io = io
        self.max_pixels = max_pixels
        self.tissue_percentiles = tissue_percentiles
        self.mask_background = mask_background

    def _fit_pixels(self, pixels: np.ndarray) -> None:
        rgb = np.ascontiguousarray(pixels).reshape(1, -1, 3)
        stains, _, max_conc = self._estimate(rgb, self._masks(rgb)[1], None)  # the target: all its tissue
        self.stain_matrix_ = stains[0]
        self.max_concentrations_ = max_conc[0]

    def _estimate(self, rgb: np.ndarray, tissue: np.ndarray, max_pixels: int | None):
        """Stain matrices ``(b, 2, 3)``, their least-squares pseudo-inverses ``(b, 2, 3)`` and the concentrations'
        99th percentiles ``(b, 2)`` of images ``rgb`` ``(b, n, 3)`` from their ``tissue`` ``(b, n)``."""
        lut = od_lut(self.io)[:, None]
        samples = [cv2.LUT(p, lut) for p in _tissue_pixels(rgb, tissue, max_pixels)]
        stains = np.concatenate([macenko_stains(s, alpha=self.alpha) for s in samples])
        pinv = np.linalg.pinv(np.swapaxes(stains, 1, 2)).astype(np.float32)  # least squares
        if not self.tissue_percentiles:  # over all pixels
            od = (cv2.LUT(image[None], lut)[0] for image in rgb)
            max_conc = np.stack([_percentile(p @ o.T, 99) for p, o in zip(pinv, od)])
        elif len(samples) == 1:  # one (b, k, 3) sample
            max_conc = _percentile(pinv @ np.swapaxes(samples[0], 1, 2), 99)
        else:
            max_conc = np.concatenate(
                [_percentile(p @ np.swapaxes(s, 1, 2), 99) for p, s in zip(pinv, samples)]
            )
        return stains, pinv, max_conc

    def _masks(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Glass (0/255) and the pixels to estimate from (bool: ``OD >= beta`` in every channel), ``(b, n)``, of
        images ``rgb`` ``(b, n, 3)``, one image at a time in reused buffers."""
        glass = np.empty(rgb.shape[:2], np.uint8)
        tissue = np.empty(rgb.shape[:2], np.uint8)
        scratch = np.empty((4, 1, rgb.shape[1]), np.uint8)
        # all(OD >= beta)  <=>  every channel <= io * exp(-beta) - 1, decided on the brightest uint8 channel
        thr = float(np.floor(self.io * np.exp(-self.beta) - 1))
        for i, image in enumerate(rgb):
            _, high = glass_and_max(image[None], out=glass[i : i + 1], scratch=scratch)
            cv2.threshold(high, thr, 1, cv2.THRESH_BINARY_INV, dst=tissue[i : i + 1])
        return glass, tissue.view(bool)

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Normalize ``(rows, cols, 3)`` or ``(n, rows, cols, 3)`` uint8 images; same shape out.

        Three passes: glass and tissue masks, image by image; every image's stain vectors and percentiles from its
        tissue sample (all images at once with ``max_pixels``); then the pixel path, image by image in buffers that
        stay in cache: OD by a 256-entry table, one 3x3 map (least squares, percentile scaling and the target's
        stains folded together), ``io * exp(-OD)`` rounded, glass put back.
        """
        self._check_fitted()
        batch, single = as_batch(images)
        batch = np.ascontiguousarray(batch)
        n, rows, cols = batch.shape[:3]
        rgb = batch.reshape(n, rows * cols, 3)
        glass, tissue = self._masks(rgb)
        _, pinv, max_conc = self._estimate(rgb, tissue, self.max_pixels)
        scale = (self.max_concentrations_ / np.maximum(max_conc, 1e-6)).astype(np.float32)
        # OD_out = OD_in @ pinv.T @ diag(scale) @ -stains_target: one 3x3 map per image, applied by cv2.transform
        maps = np.swapaxes(pinv, 1, 2) @ (scale[:, :, None] * -self.stain_matrix_.astype(np.float32))
        out = np.empty_like(batch)
        od, od_out = np.empty((2, rows, cols, 3), np.float32)
        lut = od_lut(self.io)[:, None]
        for i in range(n):
            cv2.LUT(batch[i], lut, dst=od)
            cv2.transform(od, maps[i].T, dst=od_out)
            cv2.convertScaleAbs(cv2.exp(od_out, dst=od_out), dst=out[i], alpha=self.io)
            if self.mask_background:  # glass keeps its exact colour
                cv2.copyTo(batch[i], glass[i].reshape(rows, cols), out[i])
        return out[0] if single else out


def _tissue_pixels(rgb: np.ndarray, tissue: np.ndarray, max_pixels: int | None) -> list[np.ndarray]:
    """The pixels to estimate each image's stains from: ``max_pixels`` at an even stride through its ``tissue``
    (all of it if ``None``; all of the image if fewer than 16 are tissue), as ``[(b, max_pixels, 3)]`` or, for
    ``None``, a ``(1, count, 3)`` array per image. uint8, gathered from ``rgb`` ``(b, n, 3)``; the indices are
    found image by image, while its mask is in cache."""
    b, m = tissue.shape
    rows = []
    for i in range(b):
        r = np.flatnonzero(tissue[i])
        r = r if len(r) >= 16 else np.arange(m)  # an all-glass image keeps working
        if max_pixels is not None:
            r = r[np.linspace(0, len(r) - 1, max_pixels).astype(np.intp)]
        rows.append(r + i * m)
    flat = rgb.reshape(-1, 3)
    if max_pixels is None:
        return [np.take(flat, r, axis=0)[None] for r in rows]
    return [np.take(flat, np.concatenate(rows), axis=0).reshape(b, max_pixels, 3)]


def _percentile(values: np.ndarray, q: float | list[float]) -> np.ndarray:
    """``np.percentile(values, q, axis=-1)`` (linear interpolation) bit for bit, from a full sort.

    numpy sorts float32 rows with SIMD; ``np.percentile`` along an axis partitions copies of each row, several
    times slower on the (images, pixels) arrays here. ``q``: a number, or a list (its axis comes first).
    """
    s = np.sort(values, axis=-1)
    n = s.shape[-1]
    virtual = (n - 1) * np.true_divide(q, 100)
    prev = np.floor(virtual)
    gamma = virtual - prev
    lo = np.minimum(prev, n - 1).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    if type(q) in (int, float):  # as numpy: a scalar q interpolates in the values' dtype
        a, b, t = s[..., int(lo)], s[..., int(hi)], float(gamma)
    else:
        a, b = np.moveaxis(s[..., lo], -1, 0), np.moveaxis(s[..., hi], -1, 0)
        t = gamma.reshape(gamma.shape + (1,) * (a.ndim - 1))
    diff = b - a
    out = np.add(a, diff * t)
    np.subtract(b, diff * (1 - t), out=out, where=t >= 0.5, casting="unsafe", dtype=out.dtype)
    return out

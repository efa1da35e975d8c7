"""Macenko stain normalization: H and E optical-density vectors from the angular extremes of the OD plane."""

from __future__ import annotations

import cv2
import numpy as np

from eosin.stain._common import StainNormalizer, as_batch, keep_glass, od_lut, recompose, tissue_or_all

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
    mean = od.sum(axis=1) / n
    cov = np.swapaxes(od, 1, 2) @ od / n - mean[:, :, None] * mean[:, None, :]
    _, vecs = np.linalg.eigh(cov.astype(np.float64))
    plane = vecs[:, :, 1:3].astype(np.float32)  # second and first principal directions
    plane[:, :, 1] *= np.where(plane[:, :, 1].sum(axis=1) < 0, -1, 1)[:, None]  # signs are arbitrary: OD > 0
    proj = od @ plane
    phi = np.arctan2(proj[:, :, 1], proj[:, :, 0])
    lo, hi = np.percentile(phi, [alpha, 100 - alpha], axis=1)
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
    _chunk = 16

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

    def _od_tissue(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """OD ``(b, n, 3)`` float32 and the pixels to estimate from ``(b, n)`` of images ``rgb`` ``(b, n, 3)``."""
        flat = np.ascontiguousarray(rgb).reshape(-1, rgb.shape[-2], 3)
        od = cv2.LUT(flat, od_lut(self.io)[:, None]).reshape(rgb.shape)
        # all(OD >= beta)  <=>  every channel <= io * exp(-beta) - 1, decided on the uint8 values
        thr = int(np.floor(self.io * np.exp(-self.beta) - 1))
        tissue = cv2.inRange(flat, (0, 0, 0), (thr, thr, thr)).reshape(rgb.shape[:-1]) > 0
        return od, tissue

    def _decompose(self, od: np.ndarray, tissue: np.ndarray, max_pixels: int | None):
        """Stain matrices ``(b, 2, 3)``, concentrations ``(b, 2, n)`` and their 99th percentiles ``(b, 2)``."""
        rows = [np.flatnonzero(tissue_or_all(tissue[i])) for i in range(len(od))]
        if max_pixels is None:
            samples = [od[i, r] for i, r in enumerate(rows)]
        else:  # an even stride through each image's tissue: one (b, k, 3) array
            picks = np.stack([r[np.linspace(0, len(r) - 1, max_pixels).astype(np.intp)] for r in rows])
            samples = [np.take_along_axis(od, picks[:, :, None], axis=1)]
        stains = np.concatenate(
            [macenko_stains(t if t.ndim == 3 else t[None], alpha=self.alpha) for t in samples]
        )
        pinv = np.linalg.pinv(np.swapaxes(stains, 1, 2)).astype(np.float32)  # (b, 2, 3) least squares
        conc = pinv @ np.swapaxes(od, 1, 2) if not self.tissue_percentiles or max_pixels is None else pinv
        if not self.tissue_percentiles:
            max_conc = np.percentile(conc, 99, axis=2)
        elif max_pixels is not None:
            max_conc = np.percentile(pinv @ np.swapaxes(samples[0], 1, 2), 99, axis=2)
        else:
            max_conc = np.stack([np.percentile(pinv[i] @ t.T, 99, axis=1) for i, t in enumerate(samples)])
        return stains, conc, max_conc

    def _fit_pixels(self, pixels: np.ndarray) -> None:
        od, tissue = self._od_tissue(pixels[None])
        stains, _, max_conc = self._decompose(od, tissue, None)  # the target: every tissue pixel
        self.stain_matrix_ = stains[0]
        self.max_concentrations_ = max_conc[0]

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Normalize ``(rows, cols, 3)`` or ``(n, rows, cols, 3)`` uint8 images; same shape out."""
        self._check_fitted()
        batch, single = as_batch(images)
        out = np.empty_like(batch)
        target = -self.stain_matrix_.astype(np.float32)
        for start in range(0, len(batch), self._chunk):
            chunk = batch[start : start + self._chunk]
            od, tissue = self._od_tissue(chunk.reshape(len(chunk), -1, 3))
            _, conc, max_conc = self._decompose(od, tissue, self.max_pixels)
            scale = (self.max_concentrations_ / np.maximum(max_conc, 1e-6)).astype(np.float32)
            if conc.ndim == 3 and conc.shape[1:] == (2, 3):  # only the pseudo-inverses: one 3x3 map per image
                # OD_out = OD_in @ pinv.T @ diag(scale) @ -stains_target, applied per pixel by cv2.transform
                maps = np.swapaxes(conc, 1, 2) @ (scale[:, :, None] * target)
                for i, image_od in enumerate(od):
                    od_out = cv2.transform(image_od.reshape(-1, 1, 3), maps[i].T)
                    out[start + i] = cv2.convertScaleAbs(cv2.exp(od_out), alpha=self.io).reshape(
                        chunk.shape[1:]
                    )
            else:
                out[start : start + len(chunk)] = recompose(
                    conc * scale[:, :, None], target, self.io, chunk.shape
                )
        if self.mask_background:
            keep_glass(out, batch)
        return out[0] if single else out

"""Macenko stain normalization: H and E optical-density vectors from the angular extremes of the OD plane."""

from __future__ import annotations

import cv2
import numpy as np

from eosin.stain._common import StainNormalizer, od_lut, tissue_or_all

__all__ = ["MacenkoNormalizer", "macenko_stains"]


def macenko_stains(od: np.ndarray, *, alpha: float = 1.0) -> np.ndarray:
    """Haematoxylin and eosin OD vectors of tissue pixels by Macenko et al. (2009).

    The pixels are projected on the plane of the two main principal directions of their OD; the stain vectors are
    the directions at the ``alpha`` and ``100 - alpha`` percentiles of the angle in that plane.

    Parameters
    ----------
    od
        ``(n_pixels, 3)`` float optical densities of tissue pixels.
    alpha
        Percentile (0-50) of the angular extremes; 1 is robust to a few outliers.

    Returns
    -------
    numpy.ndarray
        ``(2, 3)`` unit rows: haematoxylin (larger red OD, it looks blue) first, then eosin.
    """
    mean = (np.ones(len(od), dtype=od.dtype) @ od) / len(od)
    cov = (od.T @ od) / len(od) - np.outer(mean, mean)
    _, vecs = np.linalg.eigh(cov.astype(np.float64))
    plane = vecs[:, 1:3].astype(np.float32)  # second and first principal directions
    if plane[:, 1].sum() < 0:  # eigenvectors' signs are arbitrary: make the main direction positive OD
        plane[:, 1] = -plane[:, 1]
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100 - alpha])
    v_lo = plane @ np.array([np.cos(lo), np.sin(lo)], dtype=np.float32)
    v_hi = plane @ np.array([np.cos(hi), np.sin(hi)], dtype=np.float32)
    stains = np.stack([v_lo, v_hi] if v_lo[0] > v_hi[0] else [v_hi, v_lo])
    return stains / np.linalg.norm(stains, axis=1, keepdims=True)


class MacenkoNormalizer(StainNormalizer):
    """Macenko et al. (2009) stain normalization, per image.

    For the target and for every image: optical density ``-log((I + 1) / io)``; pixels whose OD is below ``beta``
    in any channel (glass, very pale) are left out of the estimation; the H and E vectors come from
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
        tissue_percentiles: bool = True,
        mask_background: bool = True,
    ):
        self.alpha = alpha
        self.beta = beta
        self.io = io
        self.tissue_percentiles = tissue_percentiles
        self.mask_background = mask_background

    @property
    def _lut(self) -> np.ndarray:
        return od_lut(self.io)[:, None]  # (256, 1) float32 for cv2.LUT

    def _decompose(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stain matrix, concentrations ``(n, 2)`` and the 99th percentiles of one image's pixels."""
        image = pixels[None]  # the pixel list as a one-row OpenCV image
        od = cv2.LUT(image, self._lut)[0]
        # all(OD >= beta)  <=>  every channel <= io * exp(-beta) - 1, decided on the uint8 values
        thr = int(np.floor(self.io * np.exp(-self.beta) - 1))
        tissue = tissue_or_all(cv2.inRange(image, (0, 0, 0), (thr, thr, thr))[0] > 0)
        stains = macenko_stains(od[tissue], alpha=self.alpha)
        pinv = np.linalg.pinv(stains.T).astype(np.float32)  # (2, 3)
        conc = od @ pinv.T
        max_conc = np.percentile(conc[tissue] if self.tissue_percentiles else conc, 99, axis=0)
        return stains, conc, max_conc

    def _fit_pixels(self, pixels: np.ndarray) -> None:
        stains, _, max_conc = self._decompose(pixels)
        self.stain_matrix_ = stains
        self.max_concentrations_ = max_conc

    def _transform_one(self, pixels: np.ndarray) -> np.ndarray:
        _, conc, max_conc = self._decompose(pixels)
        scale = (self.max_concentrations_ / np.maximum(max_conc, 1e-6)).astype(np.float32)
        od = (conc * scale) @ -self.stain_matrix_.astype(np.float32)
        return cv2.convertScaleAbs(
            cv2.exp(od), alpha=self.io
        )  # io * exp(-od), rounded and saturated to uint8

"""Vahadane stain normalization: sparse non-negative factorization of optical density into H and E.

With two stains the sparse coding step of dictionary learning, a non-negative lasso per pixel, has a closed form
(:func:`nn_lasso2`), so the factorization runs vectorized over all pixels with numpy, fast enough to estimate every
image's own stain matrix as the method asks, instead of only the target's.
"""

from __future__ import annotations

import cv2
import numpy as np

from eosin.stain._common import StainNormalizer, glass_mask, od_lut, tissue_or_all

__all__ = ["VahadaneNormalizer", "nn_lasso2", "vahadane_stains"]

# Ruifrok & Johnston's H and E OD vectors: the deterministic starting point of every factorization.
_RUIFROK_HE = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]], dtype=np.float32)
_RUIFROK_HE /= np.linalg.norm(_RUIFROK_HE, axis=1, keepdims=True)


def nn_lasso2(od: np.ndarray, stains: np.ndarray, lam: float) -> np.ndarray:
    """Exact non-negative lasso codes of every pixel on two stain vectors.

    Solves ``min_c 0.5 * ||x - c @ stains||^2 + lam * sum(c)`` subject to ``c >= 0`` for each row ``x`` of ``od``
    (scikit-learn's ``sparse_encode(..., positive=True)`` objective). With two atoms the solution is the
    unconstrained one when both codes are positive, otherwise the better of the two one-atom solutions.

    Parameters
    ----------
    od
        ``(n, 3)`` optical densities.
    stains
        ``(2, 3)`` stain vectors (rows).
    lam
        L1 weight (0 gives non-negative least squares).

    Returns
    -------
    numpy.ndarray
        ``(n, 2)`` float32 concentrations.
    """
    stains = stains.astype(np.float32)
    gram = stains @ stains.T
    proj = od @ stains.T - np.float32(lam)  # (n, 2): correlations minus the L1 pull
    both = proj @ np.linalg.inv(gram).astype(np.float32).T
    sq = np.diag(gram)
    single = np.maximum(proj, 0) / sq  # each atom alone
    # objective of a one-atom solution relative to c = 0: -0.5 * proj_k^2 / |s_k|^2 (when proj_k > 0)
    gain = single * single * sq
    first = gain[:, 0] >= gain[:, 1]
    single[first, 1] = 0
    single[~first, 0] = 0
    inside = (both > 0).all(axis=1)
    return np.where(inside[:, None], both, single)


def vahadane_stains(
    od: np.ndarray, *, lam: float = 0.1, n_iter: int = 30, init: np.ndarray | None = None
) -> np.ndarray:
    """Stain matrix of tissue pixels by sparse non-negative dictionary learning (Vahadane et al., 2016).

    Alternates exact sparse codes (:func:`nn_lasso2`) and scikit-learn's dictionary update (block coordinate
    descent per atom, non-negative, unit norm), starting from Ruifrok's H and E vectors.

    Parameters
    ----------
    od
        ``(n, 3)`` optical densities of tissue pixels.
    lam
        Sparsity weight (Vahadane's lambda, TIAToolbox's ``regularizer``).
    n_iter
        Alternations.
    init
        ``(2, 3)`` starting vectors (default Ruifrok's).

    Returns
    -------
    numpy.ndarray
        ``(2, 3)`` unit rows, haematoxylin (the larger red OD) first.
    """
    od = od.astype(np.float32, copy=False)
    stains = (_RUIFROK_HE if init is None else init).astype(np.float32).copy()
    for _ in range(n_iter):
        codes = nn_lasso2(od, stains, lam)
        residual = od - codes @ stains
        for k in range(2):
            residual += np.outer(codes[:, k], stains[k])
            atom = np.maximum(codes[:, k] @ residual, 0)
            norm = np.linalg.norm(atom)
            if norm > 1e-8:
                stains[k] = atom / norm
            residual -= np.outer(codes[:, k], stains[k])
    if stains[0, 0] < stains[1, 0]:
        stains = stains[::-1].copy()
    return stains


class VahadaneNormalizer(StainNormalizer):
    """Vahadane et al. (2016) structure-preserving stain normalization, per image.

    For the target and for every image: OD ``-log((I + 1) / 256)``; glass (and pixels with no OD) left out of the
    estimation; the stain matrix by :func:`vahadane_stains` on up to ``max_pixels`` tissue pixels (an even stride
    through the image, so results do not depend on batch composition); concentrations of all pixels by the exact
    non-negative least squares (:func:`nn_lasso2` without the L1 term, which would shrink pale pixels
    to glass; TIAToolbox uses unconstrained least squares here); their 99th percentiles over tissue scaled to the target's; recomposed
    with the target's stain matrix.

    Parameters
    ----------
    lam
        Sparsity weight of the factorization (the stain matrix).
    n_iter
        Dictionary-learning alternations per image.
    max_pixels
        Tissue pixels per image used to learn its stain matrix.
    mask_background
        Leave glass (:func:`eosin.stain.glass_mask`) exactly as it is; otherwise its faint OD is rescaled with
        the tissue's and tints it. ``False`` does as TIAToolbox.

    Attributes
    ----------
    stain_matrix_ : numpy.ndarray
        ``(2, 3)`` the target's unit H and E OD vectors (rows).
    max_concentrations_ : numpy.ndarray
        ``(2,)`` 99th percentiles of the target's H and E concentrations over tissue.
    """

    name = "vahadane"
    _fitted = ("stain_matrix_", "max_concentrations_")
    _io = 256.0

    def __init__(
        self, *, lam: float = 0.1, n_iter: int = 30, max_pixels: int = 4096, mask_background: bool = True
    ):
        self.lam = lam
        self.n_iter = n_iter
        self.max_pixels = max_pixels
        self.mask_background = mask_background

    def _decompose(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = pixels[None]  # the pixel list as a one-row OpenCV image
        od = cv2.LUT(image, od_lut(self._io)[:, None])[0]
        unsaturated = cv2.inRange(image, (0, 0, 0), (254, 254, 254))[0] > 0  # no channel at full white
        tissue = tissue_or_all(~glass_mask(pixels) & unsaturated)
        od_tissue = od[tissue]
        step = max(1, len(od_tissue) // self.max_pixels)
        stains = vahadane_stains(od_tissue[::step], lam=self.lam, n_iter=self.n_iter)
        conc = nn_lasso2(od, stains, 0.0)  # non-negative least squares: no shrinkage of the concentrations
        return stains, conc, np.percentile(conc[tissue], 99, axis=0)

    def _fit_pixels(self, pixels: np.ndarray) -> None:
        stains, _, max_conc = self._decompose(pixels)
        self.stain_matrix_ = stains
        self.max_concentrations_ = max_conc

    def _transform_one(self, pixels: np.ndarray) -> np.ndarray:
        _, conc, max_conc = self._decompose(pixels)
        scale = (self.max_concentrations_ / np.maximum(max_conc, 1e-6)).astype(np.float32)
        od = (conc * scale) @ -self.stain_matrix_.astype(np.float32)
        return cv2.convertScaleAbs(cv2.exp(od), alpha=self._io)

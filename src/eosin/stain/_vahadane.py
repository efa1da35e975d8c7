"""Vahadane stain normalization: sparse non-negative factorization of optical density into H and E.

With two stains the sparse coding step of dictionary learning, a non-negative lasso per pixel, has a closed form
(:func:`nn_lasso2`), so the factorization runs vectorized over all pixels with numpy, fast enough to estimate every
image's own stain matrix as the method asks, instead of only the target's.
"""

from __future__ import annotations

import cv2
import numpy as np

from eosin.stain._common import StainNormalizer, as_batch, glass_mask, keep_glass, od_lut, recompose

__all__ = ["VahadaneNormalizer", "nn_lasso2", "vahadane_stains"]

# Ruifrok & Johnston's H and E OD vectors: the deterministic starting point of every factorization.
_RUIFROK_HE = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]], dtype=np.float32)
_RUIFROK_HE /= np.linalg.norm(_RUIFROK_HE, axis=1, keepdims=True)


def nn_lasso2(od: np.ndarray, stains: np.ndarray, lam: float) -> np.ndarray:
    """Exact non-negative lasso codes of every pixel on two stain vectors (batched over leading axes).

    Solves ``min_c 0.5 * ||x - c @ stains||^2 + lam * sum(c)`` subject to ``c >= 0`` for each row ``x`` of ``od``
    (scikit-learn's ``sparse_encode(..., positive=True)`` objective). With two atoms the solution is the
    unconstrained one when both codes are positive, otherwise the better of the two one-atom solutions.

    Parameters
    ----------
    od
        ``(..., n, 3)`` optical densities.
    stains
        ``(..., 2, 3)`` stain vectors (rows).
    lam
        L1 weight (0 gives exact non-negative least squares).

    Returns
    -------
    numpy.ndarray
        ``(..., n, 2)`` float32 concentrations.
    """
    return np.swapaxes(_nn_lasso2_rows(od, stains, lam), -1, -2)


def _nn_lasso2_rows(od: np.ndarray, stains: np.ndarray, lam: float) -> np.ndarray:
    """:func:`nn_lasso2` as ``(..., 2, n)``: one contiguous row per stain, which keeps every step a flat pass."""
    stains = np.asarray(stains, dtype=np.float32)
    gram = stains @ np.swapaxes(stains, -1, -2)  # (..., 2, 2)
    inv = np.linalg.inv(gram).astype(np.float32)[..., None]  # (..., 2, 2, 1) broadcast over pixels
    proj = stains @ np.swapaxes(od, -1, -2) - np.float32(lam)  # (..., 2, n): correlations minus the L1 pull
    p0, p1 = proj[..., 0, :], proj[..., 1, :]
    b0 = inv[..., 0, 0, :] * p0 + inv[..., 0, 1, :] * p1  # the unconstrained solution
    b1 = inv[..., 1, 0, :] * p0 + inv[..., 1, 1, :] * p1
    # one atom alone: c_k = max(p_k, 0) / |s_k|^2, lowering the objective by 0.5 * c_k * p_k
    s0 = p0 * (p0 > 0) / gram[..., 0, 0, None]
    s1 = p1 * (p1 > 0) / gram[..., 1, 1, None]
    first = s0 * p0 >= s1 * p1
    inside = (b0 > 0) & (b1 > 0)
    outside = ~inside
    out = np.empty(proj.shape, np.float32)  # selections by multiplying with masks: far faster than np.where
    out[..., 0, :] = b0 * inside + s0 * (first & outside)
    out[..., 1, :] = b1 * inside + s1 * (outside & ~first)
    return out


def vahadane_stains(
    od: np.ndarray, *, lam: float = 0.1, n_iter: int = 50, tol: float = 1e-4, init: np.ndarray | None = None
) -> np.ndarray:
    """Stain matrix of tissue pixels by sparse non-negative dictionary learning (Vahadane et al., 2016).

    Alternates exact sparse codes (:func:`nn_lasso2`) and scikit-learn's dictionary update (block coordinate
    descent per atom, non-negative, unit norm), starting from Ruifrok's H and E vectors. A batch of images is
    factorized at once; each image stops on its own, so its result does not depend on the rest of the batch.

    Parameters
    ----------
    od
        ``(n, 3)`` optical densities of tissue pixels, or ``(b, n, 3)`` for ``b`` images.
    lam
        Sparsity weight (Vahadane's lambda, TIAToolbox's ``regularizer``).
    n_iter
        At most this many alternations...
    tol
        ...stopping when no stain vector component of an image moves by more than this.
    init
        ``(2, 3)`` starting vectors (default Ruifrok's).

    Returns
    -------
    numpy.ndarray
        ``(2, 3)`` (or ``(b, 2, 3)``) unit rows, haematoxylin (the larger red OD) first.
    """
    od = np.asarray(od, dtype=np.float32)
    one = od.ndim == 2
    od = od[None] if one else od
    start = (_RUIFROK_HE if init is None else init).astype(np.float32)
    stains = np.repeat(start[None], len(od), axis=0)
    active = np.arange(len(od))
    for _ in range(n_iter):
        x, w = od[active], stains[active]
        codes = _nn_lasso2_rows(x, w, lam)  # (b, 2, n)
        # scikit-learn's atom update, max(c_k . (X - sum_{j != k} c_j s_j), 0) normalized, from two small products
        cx, cc = codes @ x, codes @ np.swapaxes(codes, 1, 2)
        new = w.copy()
        for k, j in ((0, 1), (1, 0)):
            atom = np.maximum(cx[:, k] - cc[:, k, j, None] * new[:, j], 0)
            norm = np.linalg.norm(atom, axis=1, keepdims=True)
            new[:, k] = np.where(norm > 1e-8, atom / np.maximum(norm, 1e-8), new[:, k])
        stains[active] = new
        active = active[np.abs(new - w).max(axis=(1, 2)) >= tol]
        if not len(active):
            break
    swap = stains[:, 0, 0] < stains[:, 1, 0]
    stains[swap] = stains[swap, ::-1]
    return stains[0] if one else stains


class VahadaneNormalizer(StainNormalizer):
    """Vahadane et al. (2016) structure-preserving stain normalization, per image.

    For the target and for every image: OD ``-log((I + 1) / 256)``; a sample of ``max_pixels`` tissue pixels
    (glass and saturated pixels left out; an even stride through the image, so the result does not depend on the
    batch) gives the image's stain matrix by :func:`vahadane_stains` and its concentrations' 99th percentiles;
    concentrations of all pixels by exact non-negative least squares (:func:`nn_lasso2` without the L1 term, which
    would shrink pale pixels to glass; TIAToolbox uses unconstrained least squares), scaled to the target's
    percentiles and recomposed with the target's stain matrix. Images are processed in chunks, all numpy
    operations running over a whole chunk.

    Parameters
    ----------
    lam
        Sparsity weight of the factorization (the stain matrix).
    n_iter
        At most this many dictionary-learning alternations per image.
    max_pixels
        Tissue pixels sampled per image for its stain matrix and percentiles (the target uses up to 16 times more).
    per_image
        Estimate each image's stain matrix and percentiles (the method as published). ``False`` estimates them
        once per :meth:`transform` call from a pooled sample of ``4 * max_pixels`` tissue pixels of the whole
        batch: for a batch of tiles of one slide, a per-slide estimate that treats all tiles alike, and about
        4 times faster; results then depend on what else is in the batch.
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
    _chunk = 16

    def __init__(
        self,
        *,
        lam: float = 0.1,
        n_iter: int = 50,
        max_pixels: int = 2048,
        per_image: bool = True,
        mask_background: bool = True,
    ):
        self.lam = lam
        self.n_iter = n_iter
        self.max_pixels = max_pixels
        self.per_image = per_image
        self.mask_background = mask_background

    def _sample(self, rgb: np.ndarray, n_sample: int) -> np.ndarray:
        """``n_sample`` tissue pixels of each image ``rgb`` ``(b, n, 3)``, an even stride: ``(b, n_sample, 3)``."""
        flat = np.ascontiguousarray(rgb).reshape(-1, rgb.shape[-2], 3)
        unsaturated = cv2.inRange(flat, (0, 0, 0), (254, 254, 254)).reshape(rgb.shape[:-1]) > 0
        tissue = ~glass_mask(rgb) & unsaturated
        sample = np.empty((len(rgb), n_sample, 3), np.uint8)
        for i in range(len(rgb)):
            idx = np.flatnonzero(tissue[i])
            if len(idx) < 16:  # all glass: use every pixel
                idx = np.arange(rgb.shape[1])
            sample[i] = rgb[i, idx[np.linspace(0, len(idx) - 1, n_sample).astype(np.intp)]]
        return sample

    def _estimate(self, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stain matrices ``(b, 2, 3)`` and concentrations' 99th percentiles ``(b, 2)`` of pixel samples."""
        od = self._od(sample)
        stains = vahadane_stains(od, lam=self.lam, n_iter=self.n_iter)
        return stains, np.percentile(nn_lasso2(od, stains, 0.0), 99, axis=1)

    def _od(self, rgb: np.ndarray) -> np.ndarray:
        return cv2.LUT(rgb.reshape(-1, rgb.shape[-2], 3), od_lut(self._io)[:, None]).reshape(rgb.shape)

    def _fit_pixels(self, pixels: np.ndarray) -> None:
        stains, max_conc = self._estimate(self._sample(pixels[None], 16 * self.max_pixels))
        self.stain_matrix_ = stains[0]
        self.max_concentrations_ = max_conc[0]

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Normalize ``(rows, cols, 3)`` or ``(n, rows, cols, 3)`` uint8 images; same shape out."""
        self._check_fitted()
        batch, single = as_batch(images)
        out = np.empty_like(batch)
        target = -self.stain_matrix_.astype(np.float32)
        if not self.per_image:  # one estimate from the whole batch, pooled
            n_each = max(16, 4 * self.max_pixels // len(batch))
            pooled = self._sample(batch.reshape(len(batch), -1, 3), n_each).reshape(1, -1, 3)
            stains, max_conc = self._estimate(pooled)
        for start in range(0, len(batch), self._chunk):
            chunk = batch[start : start + self._chunk]
            rgb = chunk.reshape(len(chunk), -1, 3)
            od = self._od(rgb)
            if self.per_image:
                stains, max_conc = self._estimate(self._sample(rgb, self.max_pixels))
            scale = (self.max_concentrations_ / np.maximum(max_conc, 1e-6)).astype(np.float32)
            conc = (
                _nn_lasso2_rows(od, stains, 0.0) * scale[:, :, None]
            )  # non-negative least squares, rescaled
            out[start : start + len(chunk)] = recompose(conc, target, self._io, chunk.shape)
        if self.mask_background:
            keep_glass(out, batch)
        return out[0] if single else out

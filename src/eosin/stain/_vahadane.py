"""Vahadane stain normalization: sparse non-negative factorization of optical density into H and E.

With two stains the sparse coding step of dictionary learning, a non-negative lasso per pixel, has a closed form
(:func:`nn_lasso2`), and for non-negative stains a branch-free one: two affine maps of the pixel, an elementwise
minimum and a clip at zero. So the factorization runs vectorized over the sampled pixels of many images at once
(with momentum), fast enough to estimate every image's own stain matrix as the method asks; and the
concentrations of every pixel, rescaled and recomposed with the target's stains, take a few OpenCV passes.

The closed form, for stain rows ``S`` (2x3), Gram matrix ``G = S S^T``, pixel OD ``x`` and ``p = S x - lam``:
the unconstrained solution is ``b = G^-1 p`` and the one-stain solutions are ``q_k = p_k / g_kk``. The KKT
conditions give the exact non-negative lasso codes ``c_0 = max(b_0 if b_1 > 0 else q_0, 0)`` and
``c_1 = max(b_1 if b_0 > 0 else q_1, 0)``. When ``g_01 >= 0`` (non-negative stains), ``q_0 = b_0 + (g_01 / g_00) b_1``,
so ``b_1 > 0`` exactly when ``b_0 <= q_0`` and the selection is a minimum: ``c = max(min(b, q), 0)``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from eosin.stain._common import StainNormalizer, as_batch, glass_and_max, od_lut

__all__ = ["VahadaneNormalizer", "nn_lasso2", "vahadane_stains"]

# Ruifrok & Johnston's H and E OD vectors: the deterministic starting point of a factorization without a guess.
_RUIFROK_HE = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]], dtype=np.float32)
_RUIFROK_HE /= np.linalg.norm(_RUIFROK_HE, axis=1, keepdims=True)


def _code_maps(stains: np.ndarray, lam: float) -> np.ndarray:
    """Affine maps ``(..., 4, 4)`` from ``[x, 1]`` to ``[b_0, b_1, q_0, q_1]`` (module docstring) for ``(..., 2, 3)`` stains."""
    stains = np.asarray(stains, dtype=np.float64)
    gram = stains @ np.swapaxes(stains, -1, -2)
    inv = np.linalg.inv(gram)
    diag = np.diagonal(gram, axis1=-2, axis2=-1)[..., None]  # (..., 2, 1)
    maps = np.empty((*stains.shape[:-2], 4, 4))
    maps[..., :2, :3] = inv @ stains  # b = G^-1 (S x - lam)
    maps[..., :2, 3] = -lam * inv.sum(axis=-1)
    maps[..., 2:, :3] = stains / diag  # q_k = (s_k . x - lam) / g_kk
    maps[..., 2:, 3] = -lam / diag[..., 0]
    return maps.astype(np.float32)


def nn_lasso2(od: np.ndarray, stains: np.ndarray, lam: float) -> np.ndarray:
    """Exact non-negative lasso codes of every pixel on two stain vectors (batched over leading axes).

    Solves ``min_c 0.5 * ||x - c @ stains||^2 + lam * sum(c)`` subject to ``c >= 0`` for each row ``x`` of ``od``
    (scikit-learn's ``sparse_encode(..., positive=True)`` objective) by the closed form in the module docstring,
    for any two independent stain vectors.

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
    maps = _code_maps(stains, lam)
    y = np.asarray(od, dtype=np.float32) @ np.swapaxes(maps[..., :3], -1, -2) + maps[..., None, :, 3]
    b, q = y[..., :2], y[..., 2:]
    return np.maximum(np.where(b[..., ::-1] > 0, b, q), 0)


def _design(od: np.ndarray) -> np.ndarray:
    """``(b, 6, n)`` float32 rows ``[c_0, c_1, x_0, x_1, x_2, 1]`` of ``(b, n, 3)`` OD: codes are written in place."""
    z = np.empty((od.shape[0], 6, od.shape[1]), np.float32)
    z[:, 2:5] = np.swapaxes(od, 1, 2)
    z[:, 5] = 1
    return z


def _codes(z: np.ndarray, stains: np.ndarray, lam: float) -> np.ndarray:
    """Non-negative lasso codes ``max(min(b, q), 0)`` of the pixels of :func:`_design` ``z`` on non-negative
    ``(b, 2, 3)`` stains, written into ``z[:, :2]`` and returned (a view)."""
    y = _code_maps(stains, lam) @ z[:, 2:]  # (b, 4, n): b_0, b_1, q_0, q_1 of every pixel
    flat = y.reshape(-1, y.shape[-1])
    cv2.threshold(flat, 0, 0, cv2.THRESH_TOZERO, dst=flat)  # max(min(b, q), 0) = min(max(b, 0), max(q, 0))
    np.minimum(y[:, :2], y[:, 2:], out=z[:, :2])
    return z[:, :2]


def _alternate(z: np.ndarray, stains: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """One dictionary-learning alternation: exact codes ``C`` for ``stains`` ``W``, then scikit-learn's dictionary
    update; also the objective at ``W``, ``0.5 ||X - C W||^2 + lam sum(C)`` less the constant ``0.5 ||X||^2``.

    Atom ``k`` becomes ``max(C_k (X - C_j w_j), 0)`` normalized (block coordinate descent, non-negative, unit norm;
    unchanged if that is zero). Both come from the products of the codes with ``[C, X, 1]``.
    """
    codes = _codes(z, stains, lam)
    products = np.einsum("bkn,bjn->bkj", codes, z)  # (b, 2, 6): C C^T, C X^T, C 1
    cc, cx = products[..., :2], products[..., 2:5]
    new = stains.copy()
    for k, j in ((0, 1), (1, 0)):
        atom = np.maximum(cx[:, k] - cc[:, k, j, None] * new[:, j], 0)
        norm = np.linalg.norm(atom, axis=1, keepdims=True)
        new[:, k] = np.where(norm > 1e-8, atom / np.maximum(norm, 1e-8), new[:, k])
    w = stains.astype(np.float64)
    objective = 0.5 * (cc * (w @ np.swapaxes(w, 1, 2))).sum(axis=(1, 2)) - (w * cx).sum(axis=(1, 2))
    return new, objective + lam * products[..., 5].sum(axis=1)


def _factorize(
    z: np.ndarray, start: np.ndarray, *, lam: float, n_iter: int, tol: float, momentum: float
) -> np.ndarray:
    """Stain matrices ``(b, 2, 3)`` of the pixels of :func:`_design` ``z`` by alternations from ``start``.

    Each alternation starts from the last result pushed on by ``momentum`` times the last move (heavy ball,
    projected back to non-negative unit rows; 0 is the plain alternation), except after a step that raised the
    objective (a restart). Each image stops on its own when an alternation moves no component by ``tol``, so its
    result does not depend on the batch.
    """
    out = start.copy()
    todo = np.arange(len(z))  # images still moving
    point, last = start.copy(), start.copy()  # where the next alternation starts; its last result
    best = np.full(len(z), np.inf)  # the last objective
    for _ in range(n_iter):
        new, objective = _alternate(z, point, lam)
        out[todo] = new
        moving = np.abs(new - point).max(axis=(1, 2)) >= tol
        push = np.where(objective > best + 1e-5 * np.abs(best), 0, momentum)[:, None, None]
        best = objective
        point = np.maximum(new + push * (new - last), 0)
        point = (point / np.maximum(np.linalg.norm(point, axis=2, keepdims=True), 1e-8)).astype(np.float32)
        last = new
        if not moving.all():  # drop the images that stopped
            todo, z, point, last, best = todo[moving], z[moving], point[moving], last[moving], best[moving]
            if not len(todo):
                break
    return out


def _haematoxylin_first(stains: np.ndarray) -> np.ndarray:
    """Rows ordered haematoxylin (the larger red OD) first, in place."""
    swap = stains[:, 0, 0] < stains[:, 1, 0]
    stains[swap] = stains[swap, ::-1]
    return stains


def vahadane_stains(
    od: np.ndarray,
    *,
    lam: float = 0.1,
    n_iter: int = 50,
    tol: float = 1e-4,
    init: np.ndarray | None = None,
    momentum: float = 0.5,
) -> np.ndarray:
    """Stain matrix of tissue pixels by sparse non-negative dictionary learning (Vahadane et al., 2016).

    Alternates exact sparse codes (:func:`nn_lasso2`) and scikit-learn's dictionary update (block coordinate
    descent per atom, non-negative, unit norm), starting from Ruifrok's H and E vectors. The alternation is a
    descent on the stain matrix that crawls where the two stains are close; momentum (heavy ball, restarted when
    the objective rises) reaches the same fixed point in about half the alternations. A batch of images is factorized at once; each image stops on its own, so its result does
    not depend on the rest of the batch.

    Parameters
    ----------
    od
        ``(n, 3)`` optical densities of tissue pixels, or ``(b, n, 3)`` for ``b`` images.
    lam
        Sparsity weight (Vahadane's lambda, TIAToolbox's ``regularizer``).
    n_iter
        At most this many alternations...
    tol
        ...stopping when no stain vector component of an image moves by this much in an alternation.
    init
        ``(2, 3)`` non-negative starting vectors (default Ruifrok's).
    momentum
        Fraction of the last move added to each alternation's start (0: the plain alternation).

    Returns
    -------
    numpy.ndarray
        ``(2, 3)`` (or ``(b, 2, 3)``) unit rows, haematoxylin (the larger red OD) first.
    """
    od = np.asarray(od, dtype=np.float32)
    one = od.ndim == 2
    od = od[None] if one else od
    start = np.repeat(np.asarray(_RUIFROK_HE if init is None else init, np.float32)[None], len(od), axis=0)
    stains = _factorize(_design(od), start, lam=lam, n_iter=n_iter, tol=tol, momentum=momentum)
    stains = _haematoxylin_first(stains)
    return stains[0] if one else stains


def _percentile99(values: np.ndarray) -> np.ndarray:
    """99th percentile along the last axis, linearly interpolated as :func:`numpy.percentile` (a full sort,
    which numpy vectorizes: faster than a partition here)."""
    s = np.sort(values, axis=-1)
    pos = 0.99 * (s.shape[-1] - 1)
    lo = int(pos)
    hi = min(lo + 1, s.shape[-1] - 1)
    return s[..., lo] + np.float32(pos - lo) * (s[..., hi] - s[..., lo])


class VahadaneNormalizer(StainNormalizer):
    """Vahadane et al. (2016) structure-preserving stain normalization, per image.

    For the target and for every image: OD ``-log((I + 1) / 256)``; a sample of ``max_pixels`` tissue pixels
    (glass and saturated pixels left out; an even stride through the image, so the result does not depend on the
    batch) gives the image's stain matrix by :func:`vahadane_stains` (an image's factorization starts from the
    target's stain matrix, the target's from Ruifrok's) and its concentrations' 99th percentiles; concentrations
    of all pixels by exact non-negative least squares (:func:`nn_lasso2` without the L1 term, which would shrink
    pale pixels to glass; TIAToolbox uses unconstrained least squares), scaled to the target's percentiles and
    recomposed with the target's stain matrix.

    Per image the pixel path is OpenCV passes: OD by a look-up table; ``D b`` and ``D q`` (``D`` the percentile
    scaling, positive, so it commutes with the minimum and the clip) by two 3x3 maps; ``max(min(D b, D q), 0)``;
    the target's stains by one 3x3 map; ``256 exp(-od)``, rounded.

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
        batch: for a batch of tiles of one slide, a per-slide estimate that treats all tiles alike; results then
        depend on what else is in the batch.
    mask_background
        Leave glass (:func:`eosin.stain.glass_mask`) exactly as it is; otherwise its faint OD is rescaled with
        the tissue's and tints it. ``False`` does as TIAToolbox.
    n_jobs
        Threads working on chunks of images at once (scikit-learn's meaning: ``None`` is 1, ``-1`` all cores).
        The default leaves the other cores to the caller (a tile stream already runs worker processes).

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
    _chunk_pixels = 1 << 20  # image pixels per chunk of masks or pixel path (16 tiles of 256 px)
    _estimate_pixels = 1 << 17  # sampled pixels per batched factorization (64 images of 2048)
    _tol = 1e-4  # stop when no stain component moves this much in an alternation
    _momentum = 0.5

    def __init__(
        self,
        *,
        lam: float = 0.1,
        n_iter: int = 50,
        max_pixels: int = 2048,
        per_image: bool = True,
        mask_background: bool = True,
        n_jobs: int | None = None,
    ):
        self.lam = lam
        self.n_iter = n_iter
        self.max_pixels = max_pixels
        self.per_image = per_image
        self.mask_background = mask_background
        self.n_jobs = n_jobs

    # --- estimation ---------------------------------------------------------------------------------------

    def _estimate(self, sample: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stain matrices ``(b, 2, 3)`` and concentrations' 99th percentiles ``(b, 2)`` of pixel samples."""
        z = _design(cv2.LUT(sample, _od_lut(self._io)))
        start = np.repeat(start[None].astype(np.float32), len(z), axis=0)
        stains = _factorize(
            z, start, lam=self.lam, n_iter=self.n_iter, tol=self._tol, momentum=self._momentum
        )
        stains = _haematoxylin_first(stains)
        return stains, _percentile99(_codes(z, stains, 0.0))

    def _fit_pixels(self, pixels: np.ndarray) -> None:
        rgb = np.ascontiguousarray(pixels).reshape(1, -1, 3)
        sample = np.empty((1, 16 * self.max_pixels, 3), np.uint8)
        _masks_and_samples(rgb, np.empty(rgb.shape[:2], np.uint8), sample)
        stains, max_conc = self._estimate(sample, _RUIFROK_HE)
        self.stain_matrix_ = stains[0]
        self.max_concentrations_ = max_conc[0]

    # --- transform ----------------------------------------------------------------------------------------

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Normalize ``(rows, cols, 3)`` or ``(n, rows, cols, 3)`` uint8 images; same shape out.

        Three passes over chunks of images: glass masks and tissue samples; stain matrices and percentiles
        (batched factorizations); then the pixel path, image by image (buffers of one image stay in cache).
        """
        self._check_fitted()
        batch, single = as_batch(images)
        batch = np.ascontiguousarray(batch)
        n, rows, cols = batch.shape[:3]
        rgb = batch.reshape(n, rows * cols, 3)
        n_sample = self.max_pixels if self.per_image else max(16, 4 * self.max_pixels // n)
        glass = np.empty((n, rows * cols), np.uint8)
        samples = np.empty((n, n_sample, 3), np.uint8)

        def sample(part: slice) -> None:
            _masks_and_samples(rgb[part], glass[part], samples[part])

        with _Pool(self.n_jobs) as pool:
            pool.run(sample, _parts(n, self._chunk_pixels // (rows * cols)))
            if self.per_image:
                stains, max_conc = np.empty((n, 2, 3), np.float32), np.empty((n, 2), np.float32)

                def estimate(part: slice) -> None:
                    stains[part], max_conc[part] = self._estimate(samples[part], self.stain_matrix_)

                pool.run(estimate, _parts(n, self._estimate_pixels // n_sample, pool.n_jobs))
            else:  # one estimate from the whole batch, pooled
                stains, max_conc = self._estimate(samples.reshape(1, -1, 3), self.stain_matrix_)
                stains, max_conc = np.repeat(stains, n, axis=0), np.repeat(max_conc, n, axis=0)
            to_b, to_q = self._pixel_maps(stains, max_conc)
            out = np.empty_like(batch)

            def normalize(part: slice) -> None:
                self._normalize(batch[part], out[part], to_b[part], to_q[part], glass[part])

            pool.run(normalize, _parts(n, self._chunk_pixels // (rows * cols)))
        return out[0] if single else out

    def _normalize(
        self, images: np.ndarray, out: np.ndarray, to_b: np.ndarray, to_q: np.ndarray, glass: np.ndarray
    ) -> None:
        """The pixel path of ``(b, rows, cols, 3)`` ``images`` into ``out`` with their maps (:meth:`_pixel_maps`),
        image by image; glass (``glass`` 0/255) put back as it was."""
        rows, cols = images.shape[1:3]
        recompose = np.zeros((3, 3), np.float32)
        recompose[:, :2] = -self.stain_matrix_.T  # -OD of the target's stains; the third concentration is 0
        od, conc, other = np.empty((3, rows, cols, 3), np.float32)  # one image's buffers stay in cache
        lut = _od_lut(self._io)
        for i in range(len(images)):
            cv2.LUT(images[i], lut, dst=od)
            cv2.transform(od, to_b[i], dst=conc)
            cv2.transform(od, to_q[i], dst=other)
            cv2.min(conc, other, dst=conc)
            cv2.threshold(conc, 0, 0, cv2.THRESH_TOZERO, dst=conc)  # the scaled concentrations
            cv2.transform(conc, recompose, dst=od)
            cv2.convertScaleAbs(cv2.exp(od, dst=od), dst=out[i], alpha=self._io)  # io * exp(-OD), rounded
        if self.mask_background:
            cv2.copyTo(images.reshape(-1, cols, 3), glass.reshape(-1, cols), out.reshape(-1, cols, 3))

    def _pixel_maps(self, stains: np.ndarray, max_conc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per image ``(b, 3, 3)`` maps of OD to ``[D b, 0]`` and ``[D q, 0]``: unconstrained and one-stain least
        squares scaled by ``D = target's / image's 99th percentiles``."""
        scale = self.max_concentrations_ / np.maximum(max_conc, 1e-6)
        maps = _code_maps(stains, 0.0)[..., :3] * np.tile(scale, 2)[..., None]  # (b, 4, 3)
        to_b, to_q = np.zeros((2, len(stains), 3, 3), np.float32)
        to_b[:, :2], to_q[:, :2] = maps[:, :2], maps[:, 2:]
        return to_b, to_q


def _masks_and_samples(rgb: np.ndarray, glass: np.ndarray, samples: np.ndarray) -> None:
    """Glass masks (0/255) of images ``rgb`` ``(b, n, 3)`` into ``glass`` ``(b, n)``, and into ``samples``
    ``(b, k, 3)`` ``k`` pixels of each image at an even stride through its tissue (neither glass nor saturated: no
    channel at 255; all of the image if fewer than 16 pixels are tissue): the ``j``-th is the
    ``floor(j (count - 1) / (k - 1))``-th. One image at a time in reused buffers, its indices found while its
    mask is in cache."""
    b, m = glass.shape
    k = samples.shape[1]
    steps = np.arange(k)
    scratch = np.empty((4, 1, m), np.uint8)
    tissue = np.empty((1, m), np.uint8)
    for i in range(b):
        image = rgb[i : i + 1]  # (1, n, 3): an OpenCV image
        _, high = glass_and_max(image, out=glass[i : i + 1], scratch=scratch)
        cv2.threshold(high, 254, 1, cv2.THRESH_BINARY_INV, dst=tissue)  # 1 where max(R, G, B) < 255
        cv2.subtract(tissue, glass[i : i + 1], dst=tissue)  # 0 on glass (255)
        picked = np.flatnonzero(tissue.view(bool))
        if len(picked) < min(16, m):  # an all-glass image keeps working
            picked = np.arange(m)
        np.take(rgb[i], picked[steps * (len(picked) - 1) // max(k - 1, 1)], axis=0, out=samples[i])


def _od_lut(io: float) -> np.ndarray:
    """:func:`od_lut` as an OpenCV table (a column)."""
    return od_lut(io)[:, None]


def _parts(n: int, size: int, n_jobs: int = 1) -> list[slice]:
    """``n`` items in slices of at most ``size`` (at least 1), and at least ``n_jobs`` of them if there are as many
    items."""
    size = max(1, min(size, -(-n // n_jobs)))
    return [slice(i, i + size) for i in range(0, n, size)]


class _Pool:
    """Runs a function on parts, in ``n_jobs`` threads (scikit-learn's meaning: ``None`` is 1, -1 all cores) or,
    for 1, in the calling thread. OpenCV and numpy's large operations release the GIL."""

    def __init__(self, n_jobs: int | None):
        cores = os.cpu_count() or 1
        self.n_jobs = 1 if n_jobs is None else max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)
        self._pool = ThreadPoolExecutor(self.n_jobs) if self.n_jobs > 1 else None

    def run(self, fn, parts: list[slice]) -> None:
        if self._pool is None or len(parts) < 2:
            for part in parts:
                fn(part)
        else:
            list(self._pool.map(fn, parts))

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown()

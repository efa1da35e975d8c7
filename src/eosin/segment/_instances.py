"""Instance separation: from a foreground (and optionally interior) probability map to labelled objects."""

from __future__ import annotations

import numpy as np

from eosin.errors import UsageError

__all__ = ["METHODS", "separate_instances"]

METHODS = ("components", "distance", "boundary")


def separate_instances(
    foreground: np.ndarray,
    *,
    interior: np.ndarray | None = None,
    method: str = "auto",
    threshold: float = 0.5,
    min_distance: int = 3,
    min_size: int = 10,
    seed_threshold: float | None = None,
) -> np.ndarray:
    """Label the objects of a foreground map, splitting touching ones.

    Parameters
    ----------
    foreground
        ``(rows, cols)`` probability of foreground (or a binary mask).
    interior
        ``(rows, cols)`` probability of an object's interior (not its boundary), from a boundary-aware model.
    method
        ``components``: connected components of the mask. ``distance``: watershed of the distance transform,
        seeded at its local maxima at least ``min_distance`` apart (touching round objects). ``boundary``:
        watershed seeded by the connected components of ``interior > threshold``, flooding the mask. ``auto``:
        ``boundary`` when ``interior`` is given, else ``distance``.
    threshold
        Probability above which a pixel is foreground (and interior).
    min_distance
        Minimum distance between seeds for ``distance``, in pixels (about the smallest object radius).
    min_size
        Objects smaller than this many pixels are dropped.
    seed_threshold
        Interior probability above which a pixel seeds an object for ``boundary`` (default: ``threshold``). A
        higher value keeps seeds only in the confident core of each object, so objects that touch through a
        faint boundary are not seeded as one; ``eosin train seg`` chooses it on validation images.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` int32 labels, 0 for background, 1..n.
    """
    from scipy import ndimage
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import relabel_sequential, watershed

    if method == "auto":
        method = "boundary" if interior is not None else "distance"
    if method not in METHODS:
        from eosin.errors import UnknownNameError

        raise UnknownNameError("instance method", method, list(METHODS))
    fg = np.asarray(foreground)
    if fg.ndim != 2:
        raise UsageError(f"the foreground map must be 2-D, got shape {fg.shape}.")
    mask = fg > threshold if fg.dtype != bool else fg
    if min_size > 1:
        mask = remove_small_objects(mask, max_size=min_size - 1)
    if method == "components":
        labels, _ = ndimage.label(mask, structure=np.ones((3, 3), bool), output=np.int32)
    elif method == "boundary":
        if interior is None:
            raise UsageError("method='boundary' needs the interior map (a model with a boundary channel).")
        cut = threshold if seed_threshold is None else seed_threshold
        seeds, _ = ndimage.label((np.asarray(interior) > cut) & mask, output=np.int32)
        labels = watershed(-np.asarray(interior, np.float32), seeds, mask=mask).astype(np.int32)
        # foreground parts holding no seed keep their own label
        rest, _ = ndimage.label(mask & (labels == 0), output=np.int32)
        labels[rest > 0] = rest[rest > 0] + labels.max()
    else:
        from skimage.feature import peak_local_max

        distance = ndimage.distance_transform_edt(mask)
        smooth = ndimage.gaussian_filter(distance, 1.0)
        comps, _ = ndimage.label(mask, output=np.int32)
        peaks = peak_local_max(smooth, min_distance=min_distance, labels=comps, exclude_border=False)
        seeds = np.zeros(mask.shape, np.int32)
        seeds[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
        labels = watershed(-smooth, seeds, mask=mask).astype(np.int32)
    if min_size > 1 and labels.any():
        sizes = np.bincount(labels.ravel())
        labels[sizes[labels] < min_size] = 0
    return relabel_sequential(labels)[0].astype(np.int32)

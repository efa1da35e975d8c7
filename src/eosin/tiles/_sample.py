"""Choosing which tiles to use for training: all, a random subset, or balanced across classes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from eosin.errors import UnknownNameError, UsageError

__all__ = ["sample_tiles", "balanced_strides", "STRATEGIES"]

STRATEGIES = ("all", "random", "balanced")


def sample_tiles(
    n_tiles: int | Any,
    *,
    strategy: str = "all",
    n: int | None = None,
    labels: Sequence[Any] | np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Indices of tiles to use, in a reproducible order.

    Parameters
    ----------
    n_tiles
        The number of tiles, or a grid (anything with ``len``).
    strategy
        ``"all"``: every tile, in grid order. ``"random"``: ``n`` tiles drawn without replacement.
        ``"balanced"``: the same number of tiles of each class in ``labels``; rare classes are oversampled
        (drawn with replacement) up to ``n // n_classes`` each, or up to the largest class when ``n`` is None.
        Tiles whose label is ``None``, ``""`` or negative are never drawn.
    n
        How many tiles to draw (``random`` and ``balanced``).
    labels
        ``(n_tiles,)`` class of each tile, for ``balanced``.
    seed
        Seed of the random generator; the same seed gives the same indices.

    Returns
    -------
    numpy.ndarray
        int64 indices into the grid; for ``balanced`` the classes are interleaved in random order.

    Examples
    --------
    >>> sample_tiles(5, strategy="balanced", labels=["a", "a", "a", "a", "b"], seed=0).size
    8
    """
    total = n_tiles if isinstance(n_tiles, (int, np.integer)) else len(n_tiles)
    if strategy not in STRATEGIES:
        raise UnknownNameError("sampling strategy", strategy, STRATEGIES)
    if n is not None and (not isinstance(n, (int, np.integer)) or n < 1):
        raise UsageError(f"n must be a positive whole number of tiles, got {n!r}.")
    rng = np.random.default_rng(seed)
    if strategy == "all":
        return np.arange(total, dtype=np.int64)
    if strategy == "random":
        if n is None:
            raise UsageError("strategy 'random' needs n= (how many tiles to draw).")
        return np.sort(rng.choice(total, size=min(n, total), replace=False)).astype(np.int64)
    # balanced
    if labels is None:
        raise UsageError("strategy 'balanced' needs labels= (one class per tile).")
    labels = np.asarray(labels, dtype=object)
    if labels.shape != (total,):
        raise UsageError(
            f"labels has {labels.shape[0] if labels.ndim else 0} entries but there are {total} tiles."
        )
    valid = np.array([_is_label(v) for v in labels], dtype=bool)
    classes = sorted({v for v in labels[valid]}, key=str)
    if not classes:
        raise UsageError("no tile has a label: nothing to balance.")
    members = {c: np.flatnonzero(valid & (labels == c)) for c in classes}
    per_class = max(len(m) for m in members.values()) if n is None else max(1, n // len(classes))
    chosen = []
    for c in classes:
        idx = members[c]
        if per_class <= idx.size:
            chosen.append(rng.choice(idx, size=per_class, replace=False))
        else:  # oversample: every tile once, then draws with replacement for the rest
            extra = rng.choice(idx, size=per_class - idx.size, replace=True)
            chosen.append(np.concatenate([idx, extra]))
    out = np.concatenate(chosen).astype(np.int64)
    rng.shuffle(out)
    return out


def _is_label(value: Any) -> bool:
    if value is None or (isinstance(value, str) and value == ""):
        return False
    if isinstance(value, (int, np.integer)) and value < 0:
        return False
    if isinstance(value, float) and (math.isnan(value) or value < 0):
        return False
    return True


def balanced_strides(class_counts: dict[str, int], tile_size: int, *, min_stride: int = 32) -> dict[str, int]:
    """Per-class tile strides that give rare classes about as many tiles as the largest one (DeepSlide).

    Instead of repeating the same tiles, a class with ``k`` times fewer tiles at full stride is tiled again with
    a stride ``tile_size / sqrt(k)`` (overlapping tiles are new views of the tissue). ``class_counts`` are the
    counts at stride ``tile_size``; strides are never below ``min_stride``.

    Examples
    --------
    >>> balanced_strides({"tumour": 100, "normal": 400}, 256)
    {'tumour': 128, 'normal': 256}
    """
    if not class_counts:
        raise UsageError("class_counts is empty.")
    largest = max(class_counts.values())
    out = {}
    for name, count in class_counts.items():
        if count <= 0:
            out[name] = tile_size
            continue
        stride = int(round(tile_size / math.sqrt(largest / count)))
        out[name] = int(min(tile_size, max(min_stride, stride)))
    return out

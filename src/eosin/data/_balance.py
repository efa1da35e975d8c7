"""Class balance the way DeepSlide and Foucart's pipeline do it: denser tiling of rare classes, and batches with a
fixed share of positive tiles."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from eosin.data._table import TileTable
from eosin.errors import DataError, UsageError

__all__ = ["PositiveFractionBatches", "cut_tiles", "stride_balanced_tiles"]


def cut_tiles(
    table: TileTable, *, tile_size: int, stride: int | Mapping[str, int] | None = None
) -> TileTable:
    """Cut every image of ``table`` into ``tile_size`` tiles (boxes), at one stride or one stride per class.

    Parameters
    ----------
    table
        Whole images with a label each (``boxes`` None), e.g. class folders of training regions.
    tile_size
        Side of the tiles in pixels; an image smaller than that gives no tile.
    stride
        Step between tiles (default ``tile_size``), or ``{class: stride}`` (see :func:`stride_balanced_tiles`).

    Returns
    -------
    TileTable
        One row per tile with ``boxes`` (x, y, w, h); labels and patients are the image's.
    """
    if table.boxes is not None:
        raise UsageError("the table already holds tiles cut from images (boxes); cut whole images only.")
    if tile_size < 1:
        raise UsageError(f"tile_size must be a positive number of pixels, got {tile_size}.")
    strides = stride if isinstance(stride, Mapping) else {c: stride or tile_size for c in table.classes}
    if any(int(s) < 1 for s in strides.values()):
        raise UsageError(f"strides must be positive, got {dict(strides)}.")
    sizes: dict[str, tuple[int, int]] = {}
    paths, labels, patients, boxes = [], [], [], []
    for path, label, patient in zip(table.paths, table.labels, table.patients, strict=True):
        if path not in sizes:
            sizes[path] = _size(Path(path))
        width, height = sizes[path]
        step = int(strides.get(label, tile_size))
        xs = np.arange(0, width - tile_size + 1, step)
        ys = np.arange(0, height - tile_size + 1, step)
        for y in ys:
            for x in xs:
                paths.append(path)
                labels.append(label)
                patients.append(patient)
                boxes.append((int(x), int(y), tile_size, tile_size))
    if not paths:
        raise DataError(
            f"no image is at least {tile_size} px a side: nothing to cut.", fix="give a smaller --tile-size"
        )
    return TileTable.from_rows(paths, labels, patients, boxes=boxes, classes=table.classes)


def stride_balanced_tiles(
    table: TileTable, *, tile_size: int, min_stride: int = 16
) -> tuple[TileTable, dict]:
    """DeepSlide's balance: rare classes tiled with a denser stride, so each class gets about as many tiles.

    The tiles per class at full stride set each class's stride (:func:`eosin.tiles.balanced_strides`:
    ``tile_size / sqrt(k)`` for a class with ``k`` times fewer tiles than the largest, never below
    ``min_stride``). Returns the tiles and the strides used.
    """
    from eosin.tiles import balanced_strides

    full = cut_tiles(table, tile_size=tile_size)
    strides = balanced_strides(full.counts(), tile_size, min_stride=min_stride)
    return cut_tiles(table, tile_size=tile_size, stride=strides), strides


class PositiveFractionBatches:
    """Batches of indices with a fixed share of positive tiles (Foucart et al.): a PyTorch ``batch_sampler``.

    Each batch holds ``round(fraction * batch_size)`` tiles of the positive class(es) and the rest from the other
    tiles, each side drawn without replacement until it runs out, then reshuffled (the rarer side repeats
    sooner). An epoch has ``ceil(n / batch_size)`` batches.

    Parameters
    ----------
    targets
        ``(n,)`` class index of each tile.
    positive
        Class indices that count as positive.
    fraction
        Share of positives per batch, in (0, 1).
    """

    def __init__(
        self, targets: np.ndarray, positive: list[int], *, fraction: float, batch_size: int, seed: int = 0
    ):
        if not 0 < fraction < 1:
            raise UsageError(f"the positive fraction must be between 0 and 1 (exclusive), got {fraction}.")
        targets = np.asarray(targets)
        is_pos = np.isin(targets, positive)
        self.pos, self.neg = np.flatnonzero(is_pos), np.flatnonzero(~is_pos)
        if not self.pos.size or not self.neg.size:
            raise DataError(
                f"a positive fraction needs positive and other tiles; there are {self.pos.size} positive and "
                f"{self.neg.size} other tiles.",
                fix="check --positive-class and the labels",
            )
        self.batch_size = int(batch_size)
        self.n_pos = min(self.batch_size - 1, max(1, int(round(fraction * self.batch_size))))
        self.n_batches = -(-targets.size // self.batch_size)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[list[int]]:
        pos, neg = _Cycle(self.pos, self.rng), _Cycle(self.neg, self.rng)
        for _ in range(self.n_batches):
            batch = np.concatenate([pos.take(self.n_pos), neg.take(self.batch_size - self.n_pos)])
            self.rng.shuffle(batch)
            yield batch.tolist()


class _Cycle:
    """Draws from ``items`` without replacement, reshuffling when they run out."""

    def __init__(self, items: np.ndarray, rng: np.random.Generator):
        self.items, self.rng, self.order, self.at = items, rng, rng.permutation(items), 0

    def take(self, k: int) -> np.ndarray:
        out = []
        while k > 0:
            if self.at == self.order.size:
                self.order, self.at = self.rng.permutation(self.items), 0
            part = self.order[self.at : self.at + k]
            out.append(part)
            self.at += part.size
            k -= part.size
        return np.concatenate(out)


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.width, im.height
    except OSError as exc:
        raise DataError(f"cannot read the image ({exc}).", path=path) from None

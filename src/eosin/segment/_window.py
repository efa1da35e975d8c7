"""Sliding-window inference with smooth blending: any image size, no seams, bounded memory on slides.

Each window's output is weighted by a separable raised-cosine window that is 1 in the middle and falls smoothly
to a small floor over the overlap at its edges; the map is the weighted sum divided by the sum of weights. Where
windows agree the result equals their value exactly (a constant model gives a constant map), and where they
disagree the transition is smooth, so tile borders leave no seams.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from eosin.errors import UsageError

__all__ = ["BandAccumulator", "blend_window", "flip_average", "sliding_window", "window_starts"]

_FLOOR = 1e-3


def blend_window(size: int, overlap: int) -> np.ndarray:
    """``(size, size)`` float32 weights: 1 inside, a raised-cosine ramp over ``overlap`` pixels at each edge.

    The ramp never reaches 0 (its floor is 1e-3), so pixels that only one window covers keep that window's value.
    """
    w = np.ones(size, np.float32)
    ramp = int(min(overlap, size // 2))
    if ramp > 0:
        t = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
        edge = _FLOOR + (1 - _FLOOR) * 0.5 * (1 - np.cos(np.pi * t))
        w[:ramp] = edge
        w[size - ramp :] = edge[::-1]
    return np.outer(w, w)


def window_starts(length: int, size: int, stride: int) -> np.ndarray:
    """Window starts covering ``[0, length)``: every ``stride`` pixels, the last one flush with the end."""
    if length <= size:
        return np.zeros(1, np.int64)
    starts = np.arange(0, length - size, stride, dtype=np.int64)
    return np.append(starts, length - size)


def sliding_window(
    image: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    tile_size: int = 256,
    overlap: float = 0.25,
    batch_size: int = 8,
) -> np.ndarray:
    """Apply ``predict`` to overlapping windows of ``image`` and blend the outputs into one map.

    Parameters
    ----------
    image
        ``(rows, cols, 3)`` uint8 RGB of any size (smaller than a window: padded by reflection).
    predict
        Maps ``(n, tile, tile, 3)`` uint8 to ``(n, channels, tile, tile)`` float (e.g. :meth:`Segmenter.predict`).
    tile_size
        Window side in pixels.
    overlap
        Shared pixels between neighbouring windows: a fraction of ``tile_size`` when below 1, else pixels.
    batch_size
        Windows per call of ``predict``.

    Returns
    -------
    numpy.ndarray
        ``(channels, rows, cols)`` float32, the same size as ``image``.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise UsageError(f"an image must be (rows, cols, channels), got shape {image.shape}.")
    over = overlap_pixels(tile_size, overlap)
    rows, cols = image.shape[:2]
    pr, pc = max(0, tile_size - rows), max(0, tile_size - cols)
    if pr or pc:
        mode = "reflect" if pr < rows and pc < cols else "edge"
        image = np.pad(image, ((0, pr), (0, pc), (0, 0)), mode=mode)
    prow, pcol = image.shape[:2]
    weight = blend_window(tile_size, over)
    ys = window_starts(prow, tile_size, tile_size - over)
    xs = window_starts(pcol, tile_size, tile_size - over)
    boxes = [(y, x) for y in ys for x in xs]
    acc: np.ndarray | None = None
    wsum = np.zeros((prow, pcol), np.float32)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i : i + batch_size]
        tiles = np.stack([image[y : y + tile_size, x : x + tile_size] for y, x in chunk])
        out = np.asarray(predict(tiles), dtype=np.float32)
        if acc is None:
            acc = np.zeros((out.shape[1], prow, pcol), np.float32)
        for (y, x), o in zip(chunk, out):
            acc[:, y : y + tile_size, x : x + tile_size] += o * weight
            wsum[y : y + tile_size, x : x + tile_size] += weight
    assert acc is not None
    acc /= wsum
    return acc[:, :rows, :cols]


def overlap_pixels(tile_size: int, overlap: float) -> int:
    """Overlap in pixels from a fraction (< 1) or a pixel count; checked to leave a positive stride."""
    over = round(overlap * tile_size) if 0 <= overlap < 1 else int(overlap)
    if not 0 <= over < tile_size:
        raise UsageError(
            f"overlap must be a fraction in [0, 1) or a pixel count below the tile size ({tile_size}), "
            f"got {overlap!r}."
        )
    return over


class BandAccumulator:
    """Blend windows that arrive in row-major order into a map written band by band (for whole slides).

    Only ``tile_size`` rows of the map are held in memory (per channel, float32, plus the weights). When a window
    starts below the band's top, the rows above it are final: they are normalised and handed to ``sink(row0,
    block)`` with ``block`` of shape ``(channels, n_rows, cols)``, at most one stride (``tile_size - overlap``)
    high; rows no window touched come out as zeros.

    Parameters
    ----------
    shape
        ``(rows, cols)`` of the whole output map.
    channels
        Output channels.
    tile_size, overlap
        Window side and overlap in output pixels.
    sink
        Called with each finished block, top to bottom, covering every row exactly once.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        channels: int,
        *,
        tile_size: int,
        overlap: int,
        sink: Callable[[int, np.ndarray], None],
    ):
        self.rows, self.cols = int(shape[0]), int(shape[1])
        self.block = (
            tile_size - overlap
        )  # blocks are emitted at most one stride high: aligned with the tile rows
        self.tile_size = tile_size
        self.weight = blend_window(tile_size, overlap)
        self.sink = sink
        self.top = 0  # map row of the band's first row
        self.acc = np.zeros((channels, tile_size, self.cols), np.float32)
        self.wsum = np.zeros((tile_size, self.cols), np.float32)

    def add(self, row: int, col: int, output: np.ndarray) -> None:
        """Add one window's ``(channels, tile, tile)`` output whose top-left is map pixel ``(row, col)``."""
        if row < self.top:
            raise UsageError(
                f"windows must arrive in row-major order (row {row} is above the band at {self.top})."
            )
        if row > self.top:
            self._emit(min(row, self.rows) - self.top)
        t = self.tile_size
        r1, c1 = min(t, self.rows - row), min(t, self.cols - col)
        if r1 <= 0 or c1 <= 0:
            return
        self.acc[:, :r1, col : col + c1] += output[:, :r1, :c1] * self.weight[:r1, :c1]
        self.wsum[:r1, col : col + c1] += self.weight[:r1, :c1]

    def close(self) -> None:
        """Emit the remaining rows (down to the bottom of the map)."""
        while self.top < self.rows:
            self._emit(min(self.block, self.rows - self.top))

    def _emit(self, n: int) -> None:
        while n > 0:
            k = min(n, self.block)
            w = self.wsum[:k]
            block = np.divide(self.acc[:, :k], w, out=np.zeros_like(self.acc[:, :k]), where=w > 0)
            self.sink(self.top, block)
            self.acc[:, : self.tile_size - k] = self.acc[:, k:]  # shift the band up by k rows, in place
            self.wsum[: self.tile_size - k] = self.wsum[k:]
            self.acc[:, -k:] = 0
            self.wsum[-k:] = 0
            self.top += k
            n -= k


def flip_average(predict: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Test-time augmentation: ``predict`` of ``(n, rows, cols, 3)`` tiles averaged over the tiles as they are,
    flipped left-right, upside down and both, each output flipped back (``(n, channels, rows, cols)``)."""

    def averaged(tiles: np.ndarray) -> np.ndarray:
        tiles = np.asarray(tiles)
        total = None
        for rows, cols in ((False, False), (False, True), (True, False), (True, True)):
            view = tiles[:, ::-1] if rows else tiles
            view = view[:, :, ::-1] if cols else view
            out = np.asarray(predict(np.ascontiguousarray(view)), np.float32)
            out = out[:, :, ::-1] if rows else out
            out = out[:, :, :, ::-1] if cols else out
            total = out if total is None else total + out
        return total / 4

    return averaged

"""Tile grids over tissue, sampling for training, and parallel tile streaming.

>>> grid = make_grid(slide, masks, mpp=0.5, tile_size=256, min_tissue=0.5)  # doctest: +SKIP
>>> for batch in iter_tiles(slide, grid, batch_size=64):  # doctest: +SKIP
...     batch.images.shape  # (64, 256, 256, 3) uint8
"""

from eosin.tiles._grid import TileGrid, box_fractions, make_grid, resolve_downsample
from eosin.tiles._sample import STRATEGIES, balanced_strides, sample_tiles
from eosin.tiles._stream import TileBatch, default_workers, iter_tiles, read_tiles

__all__ = [
    "STRATEGIES",
    "TileBatch",
    "TileGrid",
    "balanced_strides",
    "box_fractions",
    "default_workers",
    "iter_tiles",
    "make_grid",
    "read_tiles",
    "resolve_downsample",
    "sample_tiles",
]

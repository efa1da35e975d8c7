"""Tile grids, sampling and streaming on an in-memory slide built from a real H&E image."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import DATA, require
from PIL import Image

from eosin.errors import MissingResolutionError, UnknownNameError, UsageError
from eosin.slide._base import Level, Slide
from eosin.tiles import TileGrid, box_fractions, iter_tiles, make_grid, read_tiles, sample_tiles
from eosin.tiles._sample import balanced_strides


class ArraySlide(Slide):
    """A two-level slide held in memory (level 1 is a 2x area-downsample), for grid and stream tests."""

    def __init__(self, image: np.ndarray, *, mpp: float | None = 0.5, bounds=None):
        import cv2

        self.pixels = [
            image,
            cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA),
        ]
        levels = [
            Level(image.shape[1], image.shape[0], 1.0),
            Level(self.pixels[1].shape[1], self.pixels[1].shape[0], image.shape[1] / self.pixels[1].shape[1]),
        ]
        super().__init__(
            path="memory.png",
            format="memory",
            backend="memory",
            levels=levels,
            mpp_x=mpp,
            mpp_y=mpp,
            mpp_source=None if mpp is None else "slide",
            bounds=bounds,
        )

    def _read_level(self, level, x, y, width, height):
        ds = self.levels[level].downsample
        lx, ly = int(round(x / ds)), int(round(y / ds))
        return self.pixels[level][ly : ly + height, lx : lx + width].copy()

    def __reduce__(self):  # pickles by value: there is no file to reopen
        return (
            ArraySlide,
            (self.pixels[0],),
            {"mpp_x": self.mpp_x, "mpp_y": self.mpp_y, "bounds": self.bounds},
        )

    def __setstate__(self, state):
        self.__dict__.update(state)


@dataclass
class Masks:
    tissue: np.ndarray
    pen: np.ndarray
    sections: np.ndarray
    downsample: tuple[float, float]
    origin: tuple[int, int]
    mpp: float | None = None
    params: dict | None = None


@pytest.fixture(scope="module")
def he_image() -> np.ndarray:
    path = require(DATA / "segmentation" / "monuseg-train" / "tissue_image")
    first = sorted(path.glob("*.tif"))[0]
    return np.asarray(Image.open(first).convert("RGB"))  # 1000 x 1000 real H&E


def test_box_fractions_exact_on_fractional_boxes():
    rng = np.random.default_rng(0)
    mask = rng.random((40, 50)) > 0.5
    # upsample 4x: a box in mask units with quarter-pixel corners equals a whole-pixel box on the upsampled mask
    big = np.kron(mask, np.ones((4, 4))).astype(bool)
    x0 = rng.integers(0, 150, 30) / 4
    y0 = rng.integers(0, 120, 30) / 4
    got = box_fractions(mask, x0, y0, 9.25, 6.5)
    for i in range(30):
        xs, ys = int(x0[i] * 4), int(y0[i] * 4)
        ref = np.zeros((26, 37))  # outside the mask counts as 0
        sub = big[ys : ys + 26, xs : xs + 37]
        ref[: sub.shape[0], : sub.shape[1]] = sub
        assert got[i] == pytest.approx(ref.mean(), abs=1e-6)


def test_grid_covers_bounds_in_level0_with_fractions(he_image):
    slide = ArraySlide(he_image, mpp=0.25)
    # tissue: the left half of the image, at 1/10 resolution; pen in a corner; two sections
    tissue = np.zeros((100, 100), bool)
    tissue[:, :50] = True
    sections = np.zeros((100, 100), np.int32)
    sections[:50, :50] = 1
    sections[50:, :50] = 2
    pen = np.zeros((100, 100), bool)
    pen[:10, :10] = True
    masks = Masks(tissue, pen, sections, (10.0, 10.0), (0, 0))
    grid = make_grid(slide, masks, mpp=0.5, tile_size=100, min_tissue=0.0)
    # 0.5 mpp on a 0.25 mpp slide: a tile covers 200 level-0 px; 1000 px -> 5 x 5 tiles
    assert len(grid) == 25 and grid.extent == 200 and grid.downsample == 2.0 and grid.mpp == 0.5
    assert set(np.unique(grid.x)) == {0, 200, 400, 600, 800}
    # tiles in the left two columns are all tissue, the middle column half, the rest none
    frac = dict(zip(zip(grid.x.tolist(), grid.y.tolist()), grid.tissue_fraction.tolist()))
    assert frac[(0, 0)] == 1.0 and frac[(400, 0)] == pytest.approx(0.5) and frac[(600, 0)] == 0.0
    assert grid.pen_fraction[0] == pytest.approx(0.25)  # pen 100x100 level-0 px in a 200x200 tile
    by_pos = dict(zip(zip(grid.x.tolist(), grid.y.tolist()), grid.section.tolist()))
    assert by_pos[(0, 0)] == 1 and by_pos[(0, 800)] == 2 and by_pos[(800, 0)] == 0
    kept = make_grid(slide, masks, mpp=0.5, tile_size=100, min_tissue=0.5)
    assert len(kept) == 15 and np.all(kept.tissue_fraction >= 0.5)
    overl = make_grid(slide, masks, mpp=0.5, tile_size=100, overlap=50, min_tissue=0.0)
    assert overl.stride == 50 and len(overl) == 81  # starts every 100 level-0 px, last tile overhangs


def test_grid_needs_trustworthy_mpp_and_valid_args(he_image):
    slide = ArraySlide(he_image, mpp=None)
    with pytest.raises(MissingResolutionError, match="--slide-mpp"):
        make_grid(slide, None, mpp=0.5)
    grid = make_grid(slide, None, downsample=4.0, tile_size=64)  # works without mpp, records none
    assert grid.mpp is None and grid.key.startswith("ds4_64px")
    ok = ArraySlide(he_image, mpp=0.25)
    with pytest.raises(UsageError):
        make_grid(ok, None, mpp=0.5, tile_size=64, overlap=64)
    with pytest.raises(UsageError):
        make_grid(ok, None, mpp=0.5, magnification=20)
    # 20x with no objective power recorded: the 10/M convention gives 0.5 mpp
    assert make_grid(ok, None, magnification=20, tile_size=64).mpp == pytest.approx(0.5)


def test_grid_round_trips_through_group(he_image):
    slide = ArraySlide(he_image, mpp=0.25, bounds=(100, 50, 800, 900))
    grid = make_grid(slide, None, mpp=1.0, tile_size=64, overlap=8)
    assert grid.x.min() == 100 and grid.y.min() == 50
    arrays, attrs = grid.to_group()
    back = TileGrid.from_group(arrays, attrs)
    assert back.key == grid.key and np.array_equal(back.coords, grid.coords) and back.bounds == grid.bounds


def test_read_tiles_match_direct_reads(he_image):
    slide = ArraySlide(he_image, mpp=0.25)
    grid = make_grid(slide, None, mpp=0.5, tile_size=128)
    tiles = read_tiles(slide, grid.coords[:3], tile_size=128, downsample=grid.downsample)
    # mpp 0.5 is level 1 exactly: the tile is the level-1 pixels themselves
    x, y = grid.coords[1]
    assert np.array_equal(tiles[1], slide.pixels[1][y // 2 : y // 2 + 128, x // 2 : x // 2 + 128])


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_yields_every_tile_in_order(he_image, workers):
    slide = ArraySlide(he_image, mpp=0.25)
    grid = make_grid(slide, None, mpp=0.5, tile_size=100)
    batches = list(iter_tiles(slide, grid, batch_size=7, workers=workers, prefetch=1))
    indices = np.concatenate([b.indices for b in batches])
    assert np.array_equal(indices, np.arange(len(grid)))
    images = np.concatenate([b.images for b in batches])
    assert images.shape == (len(grid), 100, 100, 3) and images.dtype == np.uint8
    direct = read_tiles(slide, grid.coords, tile_size=100, downsample=grid.downsample)
    assert np.array_equal(images, direct)


def _invert(batch):
    return 255 - batch


def test_stream_subset_and_transform(he_image):
    slide = ArraySlide(he_image, mpp=0.25)
    grid = make_grid(slide, None, mpp=0.5, tile_size=100)
    idx = np.array([5, 2, 9])
    (batch,) = list(iter_tiles(slide, grid, indices=idx, batch_size=8, workers=1, transform=_invert))
    assert np.array_equal(batch.indices, idx)
    assert np.array_equal(
        batch.images, 255 - read_tiles(slide, grid.coords[idx], tile_size=100, downsample=2.0)
    )
    with pytest.raises(UsageError):
        list(iter_tiles(slide, grid, indices=np.array([len(grid)])))


def _slow_invert(batch):
    import time

    time.sleep(0.05)  # 50 ms for 4 tiles of 100 px: far above the pool threshold
    return 255 - batch


@pytest.mark.parametrize("transform, pool", [(_invert, False), (_slow_invert, True)])
def test_auto_workers_start_a_pool_only_for_costly_decoding(he_image, transform, pool, monkeypatch):
    """workers=None decodes the first batch here; a pool starts only when decoding is dear. Same output."""
    import eosin.tiles._stream as stream

    started = []
    real_pool = stream.ProcessPoolExecutor
    monkeypatch.setattr(
        stream, "ProcessPoolExecutor", lambda *a, **k: started.append(1) or real_pool(*a, **k)
    )
    monkeypatch.setattr(stream, "default_workers", lambda: 2)
    slide = ArraySlide(he_image, mpp=0.25)
    grid = make_grid(slide, None, mpp=0.5, tile_size=100)
    batches = list(iter_tiles(slide, grid, batch_size=4, transform=transform))
    assert np.array_equal(np.concatenate([b.indices for b in batches]), np.arange(len(grid)))
    direct = 255 - read_tiles(slide, grid.coords, tile_size=100, downsample=grid.downsample)
    assert np.array_equal(np.concatenate([b.images for b in batches]), direct)
    assert bool(started) is pool


def test_sampling_strategies():
    assert np.array_equal(sample_tiles(4), np.arange(4))
    r1 = sample_tiles(100, strategy="random", n=10, seed=1)
    assert len(set(r1.tolist())) == 10 and np.array_equal(
        r1, sample_tiles(100, strategy="random", n=10, seed=1)
    )
    labels = ["tumour"] * 3 + ["normal"] * 30 + [None] * 5
    idx = sample_tiles(len(labels), strategy="balanced", labels=labels, seed=0)
    drawn = [labels[i] for i in idx]
    assert drawn.count("tumour") == drawn.count("normal") == 30 and None not in drawn
    assert set(idx[[labels[i] == "tumour" for i in idx]]) == {0, 1, 2}  # every rare tile used, then repeated
    idx = sample_tiles(len(labels), strategy="balanced", labels=labels, n=10, seed=0)
    assert sorted(labels[i] for i in idx) == ["normal"] * 5 + ["tumour"] * 5
    with pytest.raises(UnknownNameError, match="balanced"):
        sample_tiles(3, strategy="balance")
    with pytest.raises(UsageError):
        sample_tiles(3, strategy="balanced", labels=[1, 2])
    assert balanced_strides({"a": 100, "b": 400}, 256) == {"a": 128, "b": 256}


def test_grid_pickles(he_image):
    grid = make_grid(ArraySlide(he_image, mpp=0.25), None, mpp=0.5, tile_size=100)
    back = pickle.loads(pickle.dumps(grid))
    assert back.key == grid.key and np.array_equal(back.x, grid.x)

"""Where tiles come from for vision-language work: labelled tile folders, plain image files, and slide stores.

Every source yields :class:`TileChunk` batches: uint8 images plus who they are (id, label when known) and where
they come from (slide, level-0 x, y, size, mpp), so that predictions, indexes and heatmaps carry provenance.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eosin.errors import DataError, UsageError

__all__ = ["TileChunk", "iter_sources", "read_image"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class TileChunk:
    """A batch of tiles with their provenance; every array has one row per tile.

    ``ids`` (str), ``labels`` (str, ``""`` when unknown), ``slides`` (source slide or image file), ``x``, ``y``
    (level-0 top-left; 0 for whole image files), ``size`` (level-0 side; the image's width for files), ``mpp``
    (NaN when unknown), ``grid_index`` (position in the store's grid; -1 for files), ``images`` (n, rows, cols, 3).
    """

    ids: np.ndarray
    labels: np.ndarray
    slides: np.ndarray
    x: np.ndarray
    y: np.ndarray
    size: np.ndarray
    mpp: np.ndarray
    grid_index: np.ndarray
    images: np.ndarray
    store: str | None = None
    grid_key: str | None = None


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """One image file as ``(rows, cols, 3)`` uint8 RGB; a file that is not an image raises :class:`DataError`."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except FileNotFoundError as exc:
        raise DataError("no such image file.", path=path, fix="check the path") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(
            f"not an image that can be read ({type(exc).__name__}).",
            path=path,
            fix="give a PNG, JPEG or TIFF tile",
        ) from exc


def _is_store(path: Path) -> bool:
    return path.is_dir() and (path / "zarr.json").is_file()


def iter_sources(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    input_size: int,
    native_mpp: float | None = None,
    batch_size: int = 64,
    grid_key: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    label_from: str = "auto",
) -> Iterator[TileChunk]:
    """Tiles of every input in order: a slide store (its grid's tiles read from the slide, at the model's native
    mpp when it has one), a folder of labelled tiles (class = sub-folder or ``CLASS-`` file prefix), a folder of
    unlabelled images, or one image file. Store tiles come resized to ``input_size``; image files as they are."""
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise DataError("no such file or folder.", path=path, fix="check the path")
        if _is_store(path):
            yield from _store_tiles(path, input_size, native_mpp, batch_size, grid_key, workers, progress)
        else:
            yield from _file_tiles(path, batch_size, label_from)


def _file_tiles(path: Path, batch_size: int, label_from: str) -> Iterator[TileChunk]:
    from eosin.data import load_tile_table

    if path.is_file():
        paths, labels = [path], [""]
    else:
        has_sub = any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())
        prefixed = all("-" in p.name for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if label_from == "none" or (label_from == "auto" and not has_sub and not prefixed):
            paths = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            labels = [""] * len(paths)
        else:
            table = load_tile_table(path, label_from=label_from)
            paths, labels = [Path(p) for p in table.paths], list(table.labels)
        if not paths:
            raise DataError(
                "no image files in this folder.", path=path, fix="give tiles as PNG/JPEG/TIFF files"
            )
    for i in range(0, len(paths), batch_size):
        chunk = paths[i : i + batch_size]
        images = [read_image(p) for p in chunk]
        shapes = {im.shape for im in images}
        stacked = np.stack(images) if len(shapes) == 1 else images
        n = len(chunk)
        yield TileChunk(
            ids=np.asarray([str(p) for p in chunk]),
            labels=np.asarray(labels[i : i + batch_size], dtype=str),
            slides=np.asarray([str(p) for p in chunk]),
            x=np.zeros(n, np.int64),
            y=np.zeros(n, np.int64),
            size=np.asarray([im.shape[1] for im in images], np.int64),
            mpp=np.full(n, np.nan),
            grid_index=np.full(n, -1, np.int64),
            images=stacked,
        )


def _store_tiles(
    path, input_size, native_mpp, batch_size, grid_key, workers, progress
) -> Iterator[TileChunk]:
    from eosin.embed import TilePrep, reading_grid
    from eosin.io import SlideStore
    from eosin.slide import open_slide
    from eosin.tiles import iter_tiles

    store = SlideStore.open(path)
    record = store.slide or {}
    key = store.pick("grids", grid_key)
    grid = store.grid(key)
    if record.get("path") is None:
        raise UsageError("the store records no slide path.", path=path, fix="make the store with eosin tile")
    slide_mpp = record.get("mpp_x") if record.get("mpp_source") == "override" else None
    slide = open_slide(record["path"], slide_mpp=slide_mpp)
    try:
        read, resize = reading_grid(grid, slide, input_size=input_size, native_mpp=native_mpp)
        prep = TilePrep(None, resize) if resize else None
        name = Path(record["path"]).name
        for batch in iter_tiles(
            slide, read, batch_size=batch_size, workers=workers, transform=prep, progress=progress
        ):
            idx = batch.indices
            n = len(idx)
            yield TileChunk(
                ids=np.asarray([f"{name}#{i}" for i in idx]),
                labels=np.full(n, "", dtype=str),
                slides=np.full(n, str(record["path"]), dtype=object).astype(str),
                x=grid.x[idx].astype(np.int64),
                y=grid.y[idx].astype(np.int64),
                size=np.full(n, int(round(grid.extent)), np.int64),
                mpp=np.full(n, np.nan if grid.mpp is None else float(grid.mpp)),
                grid_index=idx.astype(np.int64),
                images=batch.images,
                store=str(path),
                grid_key=key,
            )
    finally:
        slide.close()

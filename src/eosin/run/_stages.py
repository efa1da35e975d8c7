"""Per-slide stages: pure functions of (slide path, parameters) that write one slide's outputs.

Each stage opens the slide itself, so an executor can run it in any process (or on any machine of a cluster).
Outputs of one slide go to ``OUT/<name>/``: pictures for people (PNG) and the slide's store ``store.zarr``.
A stage whose store group already exists for the same parameters reuses it (resumable runs).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import NoTissueError
from eosin.io import param_digest

__all__ = [
    "SlideJob",
    "plan_outputs",
    "output_name",
    "tissue_stage",
    "tile_stage",
    "tissue_key",
    "job_store",
    "load_or_detect_tissue",
    "STORE_NAME",
]

STORE_NAME = "store.zarr"


@dataclass(frozen=True)
class SlideJob:
    """One slide to process: its path and the folder its outputs go to."""

    path: Path
    out_dir: Path

    @property
    def store_path(self) -> Path:
        return self.out_dir / STORE_NAME


def plan_outputs(paths: Sequence[Path], out: Path) -> list[SlideJob]:
    """Give each slide its own output folder ``out/<name>``, always strictly inside ``out``.

    The name is the file's stem made safe (:func:`output_name`); slides sharing it use their whole file name
    (``a.svs``, ``a.tiff``), and when that is shared too (``x/slide.svs``, ``y/slide.svs``) the name gets
    ``-`` and 8 hex digits of the SHA-1 of the resolved path, so each input keeps its folder whatever else is
    passed with it. A store also checks which slide it belongs to (:meth:`eosin.io.SlideStore.create`), so a
    later run with another slide of the same name is refused instead of reusing the wrong results.
    """
    paths = [Path(p) for p in paths]
    stems = [output_name(p.stem) for p in paths]
    names = [output_name(p.name) for p in paths]
    folded_stems = [s.casefold() for s in stems]  # case-insensitive file systems (macOS, Windows)
    folded_names = [n.casefold() for n in names]
    out_names = []
    for p, stem, name in zip(paths, stems, names):
        if stem and folded_stems.count(stem.casefold()) == 1:
            out_names.append(stem)
        elif name and folded_names.count(name.casefold()) == 1 and name.casefold() not in folded_stems:
            out_names.append(name)
        else:
            digest = hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]
            out_names.append(f"{stem or 'slide'}-{digest}")
    return [SlideJob(p, out / name) for p, name in zip(paths, out_names)]


def output_name(name: str) -> str:
    """``name`` made safe as one folder name inside an output folder: no ``.``/``..``, no separators, no
    leading dots (hidden) or trailing dots and spaces, no control characters; at most 150 characters.

    Returns ``""`` when nothing is left (``...svs`` has the stem ``..``); the caller then invents one.
    """
    cleaned = "".join(c if c.isprintable() and c not in "/\\" else "_" for c in name)
    return cleaned.strip().lstrip(".").rstrip(". ")[:150]


@contextlib.contextmanager
def _no_leftovers(job: SlideJob) -> Iterator[None]:
    """When the stage fails, remove what it created and left empty: a store without any group, the slide's
    output folder (results kept from earlier runs stay)."""
    existed = job.out_dir.exists()
    try:
        yield
    except BaseException:
        store = job.store_path
        with contextlib.suppress(OSError):
            if store.is_dir() and {p.name for p in store.iterdir()} <= {"zarr.json"}:
                shutil.rmtree(store)
            if not existed and job.out_dir.is_dir() and not any(job.out_dir.iterdir()):
                job.out_dir.rmdir()
        raise


def _open(path: Path, slide_mpp: float | None, backend: str | None):
    from eosin.slide import open_slide

    return open_slide(path, slide_mpp=slide_mpp, backend=backend)


def tissue_key(params: dict[str, Any]) -> str:
    """Store key of a tissue detection: its resolution and a digest of all its parameters."""
    mpp = params.get("mpp")
    res = f"mpp{mpp:g}" if mpp else "auto"
    digest = param_digest(params)
    return f"{res}_{digest}"


def job_store(job: Any, slide: Any):
    """The store of ``job`` (anything with ``path`` and ``store_path``: a :class:`SlideJob`, a job of
    :mod:`eosin.pipeline`) for its open ``slide``: created when absent, recording the slide's metadata and its
    file's identity; a store made for another slide is refused (:meth:`eosin.io.SlideStore.create`).

    Every per-slide stage opens its store this way (``tissue_stage``, ``tile_stage``, ``eosin.qc.qc_stage``).
    """
    from eosin.io import SlideStore
    from eosin.slide import diagnose

    return SlideStore.create(job.store_path, slide=diagnose(slide), source=job.path)


def load_or_detect_tissue(slide: Any, store: Any, *, tissue_mpp: float = 8.0) -> tuple[Any, bool]:
    """The slide's tissue masks from its store when present with the same parameters, else detected and stored.

    Returns the masks and whether they came from the store.
    """
    from eosin.tissue import detect_tissue

    request = {"mpp": tissue_mpp, "slide_mpp": slide.mpp_x if slide.mpp_source == "override" else None}
    for key in store.keys("tissue") if "tissue" in store.kinds() else []:
        if store.read_group("tissue", key).attrs.get("request") == request:
            return store.tissue(key), True
    masks = detect_tissue(slide, mpp=tissue_mpp)
    params = dict(masks.params)
    store.write_group(
        "tissue",
        tissue_key({**params, **request}),
        {
            "tissue": masks.tissue.astype(np.uint8),
            "pen": masks.pen.astype(np.uint8),
            "sections": masks.sections.astype(np.int32),
        },
        {
            "downsample": list(_pair(masks.downsample)),
            "origin": list(_pair(masks.origin)),
            "mpp": masks.mpp,
            "params": params,
            "request": request,
            "n_sections": int(masks.sections.max(initial=0)),
            "encoding": "tissue, pen: uint8 0/1; sections: int32 labels, 0 = none",
        },
        overwrite=True,
    )
    return masks, False


def _pair(value: Any) -> tuple[float, float]:
    if np.ndim(value) == 0:
        return float(value), float(value)
    return float(value[0]), float(value[1])


def tissue_stage(
    job: SlideJob, *, tissue_mpp: float = 8.0, slide_mpp: float | None = None, backend: str | None = None
) -> dict[str, Any]:
    """Detect tissue, pen and sections; write ``tissue.png``, ``pen.png``, ``overlay.png`` and the store group.

    Raises :class:`~eosin.errors.NoTissueError` after writing the pictures when no tissue is found.
    """
    from eosin.viz import overlay, save_png

    t0 = time.perf_counter()
    with _no_leftovers(job), _open(job.path, slide_mpp, backend) as slide:
        job.out_dir.mkdir(parents=True, exist_ok=True)
        store = job_store(job, slide)
        masks, cached = load_or_detect_tissue(slide, store, tissue_mpp=tissue_mpp)
        save_png(job.out_dir / "tissue.png", masks.tissue.astype(np.uint8) * 255)
        save_png(job.out_dir / "pen.png", masks.pen.astype(np.uint8) * 255)
        shown = _for_display(masks)
        save_png(job.out_dir / "overlay.png", overlay(_thumbnail_like(slide, shown), shown))
    summary = {
        "slide": str(job.path),
        "out": str(job.out_dir),
        "store": str(job.store_path),
        "tissue_fraction": round(float(masks.tissue.mean()), 5),
        "pen_fraction": round(float(masks.pen.mean()), 5),
        "n_sections": int(masks.sections.max(initial=0)),
        "mask_shape": list(masks.tissue.shape),
        "mask_mpp": masks.mpp,
        "mask_downsample": list(_pair(masks.downsample)),
        "cached": cached,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if not masks.tissue.any():
        raise NoTissueError(
            "no tissue was found (the masks and overlay were written so you can look).",
            path=job.path,
            fix=f"look at {job.out_dir / 'overlay.png'}; if the slide holds tissue, check that it is a brightfield "
            "scan and that the background is glass",
        )
    return summary


#: long side, in pixels, of the pictures for people (overlay.png, tiles.png); masks are enlarged to it
DISPLAY_SIDE = 1600


def _for_display(masks: Any) -> Any:
    """The masks enlarged (by whole pixels) so pictures drawn on them are about :data:`DISPLAY_SIDE` wide.

    Masks at 8 µm/px of a small slide are a few hundred pixels: too small to look at. The enlarged copy keeps the
    mapping to level 0 (its downsample shrinks by the same factor), never going finer than level 0.
    """
    from dataclasses import replace

    rows, cols = masks.tissue.shape
    dx, dy = _pair(masks.downsample)
    k = min(max(1, -(-DISPLAY_SIDE // max(rows, cols, 1))), max(1, int(min(dx, dy))))
    if k == 1:
        return masks

    def up(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a, k, axis=0), k, axis=1)

    return replace(
        masks,
        tissue=up(masks.tissue),
        pen=up(masks.pen),
        sections=up(masks.sections),
        downsample=(dx / k, dy / k),
    )


def _thumbnail_like(slide: Any, masks: Any) -> np.ndarray:
    """A thumbnail of the slide at the masks' resolution and shape."""
    import cv2

    from eosin.errors import CorruptSlideError

    dx, dy = _pair(masks.downsample)
    rows, cols = masks.tissue.shape
    try:
        thumb = slide.thumbnail(downsample=(dx + dy) / 2)
    except (
        CorruptSlideError
    ):  # a damaged tile where the picture reads: grey canvas (the grid flags the tiles)
        return np.full((rows, cols, 3), 128, np.uint8)
    if thumb.shape[:2] != (rows, cols):
        thumb = cv2.resize(thumb, (cols, rows), interpolation=cv2.INTER_AREA)
    return thumb


def tile_stage(
    job: SlideJob,
    *,
    mpp: float | None = None,
    magnification: float | None = None,
    tile_size: int = 256,
    overlap: int = 0,
    min_tissue: float = 0.5,
    tissue_mpp: float = 8.0,
    slide_mpp: float | None = None,
    backend: str | None = None,
) -> dict[str, Any]:
    """Build (or reuse) the slide's tile grid and store it under ``grids/<key>``; draw ``tiles.png``.

    Raises :class:`~eosin.errors.NoTissueError` when no tile reaches ``min_tissue``.
    """
    from eosin.tiles import TileGrid, make_grid
    from eosin.viz import draw_grid, save_png

    t0 = time.perf_counter()
    with _no_leftovers(job), _open(job.path, slide_mpp, backend) as slide:
        job.out_dir.mkdir(parents=True, exist_ok=True)
        store = job_store(job, slide)
        masks, _ = load_or_detect_tissue(slide, store, tissue_mpp=tissue_mpp)
        grid = make_grid(
            slide,
            masks,
            mpp=mpp,
            magnification=magnification,
            tile_size=tile_size,
            overlap=overlap,
            min_tissue=min_tissue,
        )
        cached = store.has("grids", grid.key)
        if cached:
            group = store.read_group("grids", grid.key)
            grid = TileGrid.from_group(group, group.attrs)
        if len(grid) == 0:
            raise NoTissueError(
                f"no tile of {tile_size} px at {grid.mpp} µm/px has at least {min_tissue:.0%} tissue.",
                path=job.path,
                fix="lower --min-tissue, or look at the tissue overlay (eosin tissue) to check the detection",
            )
        if cached:
            corrupt = np.asarray(group["corrupt"], bool) if "corrupt" in group else None
        else:
            arrays, attrs = grid.to_group()
            corrupt = _corrupt_tiles(slide, grid)
            arrays["corrupt"] = corrupt
            attrs["n_corrupt"] = int(corrupt.sum())
            store.write_group("grids", grid.key, arrays, attrs)
        shown = _for_display(masks)
        save_png(job.out_dir / "tiles.png", draw_grid(_thumbnail_like(slide, shown), grid, shown))
    return {
        "slide": str(job.path),
        "store": str(job.store_path),
        "grid": grid.key,
        "n_tiles": len(grid),
        "mpp": grid.mpp,
        "tile_size": grid.tile_size,
        "overlap": grid.overlap,
        "level0_extent": grid.extent,
        "cached": cached,
        "corrupt_tiles": None if corrupt is None else int(corrupt.sum()),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _corrupt_tiles(slide: Any, grid: Any) -> np.ndarray:
    """Per grid tile: does it cover a source tile (of the level it is read from) that does not decode cleanly."""
    from eosin.slide import verify_tiles

    level = slide.best_level(grid.downsample)
    x, y, extent = grid.x, grid.y, grid.extent
    boxes = np.column_stack([x, y, np.full((len(x), 2), int(np.ceil(extent)))])
    flags = np.zeros(len(x), bool)
    for bad in verify_tiles(slide, levels=[level], boxes=boxes):
        bx, by, bw, bh = bad.box
        flags |= (x < bx + bw) & (x + extent > bx) & (y < by + bh) & (y + extent > by)
    return flags

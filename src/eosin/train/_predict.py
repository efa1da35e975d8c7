"""Applying a tile classifier to a slide store: per-tile probabilities into the store, heatmaps, a CSV."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CAMS_KIND", "PREDICTIONS_KIND", "heatmap", "predict_store"]

PREDICTIONS_KIND = "predictions"
CAMS_KIND = "cams"


def predict_store(
    store_path: str | os.PathLike[str],
    model: Any,
    *,
    key: str,
    out_dir: str | os.PathLike[str],
    grid_key: str | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    slide_mpp: float | None = None,
    precision: str = "auto",
    overwrite: bool = True,
    progress: bool = False,
    cam: bool = False,
) -> dict[str, Any]:
    """Classify every tile of a stored grid; write ``predictions/<key>`` and ``heatmap_<class>.png`` files.

    The group holds ``proba`` ``(n_tiles, K)`` float32 in the grid's tile order and ``coords`` ``(n_tiles, 2)``
    level-0 x, y; its attributes name the classes, the grid and the checkpoint. Tiles are read as the model was
    trained: centred on each grid tile at the checkpoint's mpp when it has one and the slide a trustworthy mpp,
    else the grid's own tiles resized to the model's input size. ``precision`` is the encoder's autocast
    (``auto``: see :mod:`eosin._device`). ``progress`` shows a bar over the tiles (stderr).

    With ``cam``, each tile's Grad-CAM for its predicted class (:func:`eosin.train._cam.tile_cams`, float32) goes
    to ``cams/<key>`` (``cam`` ``(n, 32, 32)``, ``stitched`` at the thumbnail's size) and ``cam.png`` shows the
    stitched map over the thumbnail.

    Returns
    -------
    dict
        slide, store, key, n_tiles, classes, heatmaps (paths), ``proba`` and ``coords`` arrays (for the CSV), seconds.
    """
    import torch

    from eosin.data import to_input
    from eosin.embed import TilePrep, reading_grid
    from eosin.errors import UsageError
    from eosin.io import SlideStore, pick_key
    from eosin.slide import open_slide
    from eosin.tiles import iter_tiles
    from eosin.viz import save_png

    t0 = time.perf_counter()
    store = SlideStore.open(store_path)
    record = store.slide or {}
    if record.get("path") is None:
        raise UsageError(
            "the store records no slide path.", path=store.path, fix="make the store with eosin tile"
        )
    gkey = store.pick("grids", grid_key)
    grid = store.grid(gkey)
    if slide_mpp is None and record.get("mpp_source") == "override":
        slide_mpp = record.get("mpp_x")
    from eosin._device import precision_candidates
    from eosin._provenance import versions

    dev = next(model.parameters()).device
    precision_candidates(dev, precision)  # refuses impossible combinations before any work
    decision = None
    proba = np.zeros((len(grid), len(model.classes)), dtype=np.float32)
    with open_slide(record["path"], slide_mpp=slide_mpp) as slide:
        read, resize = reading_grid(
            grid, slide, input_size=model.input_size, native_mpp=model.meta.get("mpp")
        )
        prep = TilePrep(None, resize) if resize else None
        start = 0
        model.eval().to(memory_format=torch.channels_last)
        if len(grid):
            decision = _choose_precision(model, slide, read, prep, dev, precision, batch_size=batch_size)
            precision = decision.precision
        else:
            precision = "fp32"
        cams = None
        if cam:
            from eosin.train._cam import CAM_SIZE, tile_cams

            cams = np.zeros((len(grid), CAM_SIZE, CAM_SIZE), dtype=np.float16)
        for batch in iter_tiles(
            slide, read, batch_size=batch_size, workers=workers, transform=prep, progress=progress
        ):
            with torch.inference_mode():
                x = to_input(torch.from_numpy(batch.images), model.mean, model.std, dev)
                p = model.predict_proba(x, precision).cpu().numpy()
            proba[start : start + len(p)] = p
            if cams is not None:
                cams[start : start + len(p)] = tile_cams(model, x.clone(), p.argmax(axis=1))
            start += len(p)
        thumb = slide.thumbnail(max_size=1024)
        bounds = slide.bounds
    attrs = {
        "classes": list(model.classes),
        "grid": gkey,
        "encoder": model.encoder.spec.name,
        "checkpoint": model.meta.get("checkpoint"),
        "encoder_weights": model.meta.get("initial_weights"),
        "read_mpp": read.mpp,
        "read_tile_size": read.tile_size,
        "precision": precision,
        "device": str(dev),
        "versions": versions(),
        "calibration": None if decision is None else decision.record(),
        "order": "rows follow the grid's tile order",
    }
    store.write_group(
        PREDICTIONS_KIND,
        key,
        {"proba": proba, "coords": grid.coords.astype(np.int64)},
        attrs,
        overwrite=overwrite,
    )
    out_dir = Path(out_dir)
    paths = []
    cam_png = None
    if cams is not None:
        cam_png = _write_cams(store, key, cams, proba, read, gkey, thumb, bounds, out_dir, overwrite)
    for k, name in enumerate(model.classes):
        picture = heatmap(thumb, grid, proba[:, k], bounds=bounds)
        paths.append(str(save_png(out_dir / f"heatmap_{_safe(name)}.png", picture)))
    return {
        "slide": record.get("path"),
        "store": str(store.path),
        "key": key,
        "grid": gkey,
        "n_tiles": len(grid),
        "classes": list(model.classes),
        "heatmaps": paths,
        **({"cam": cam_png} if cam_png else {}),
        "device": str(dev),
        "precision": precision,
        "calibration": attrs["calibration"],
        "proba": proba,
        "coords": grid.coords,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _choose_precision(
    model: Any, slide: Any, read: Any, prep: Any, dev: Any, precision: str, *, batch_size: int
):
    """``precision``, or for ``auto`` the fastest encoder autocast that agrees with float32, measured on the first
    tiles of the slide (cached per machine and checkpoint: :mod:`eosin._calibrate`)."""
    import torch

    from eosin._calibrate import choose_inference_precision, weights_hash
    from eosin.data import to_input
    from eosin.tiles import read_tiles

    x = None
    if precision == "auto":
        rows = min(batch_size, len(read), 8 if dev.type == "cpu" else batch_size)
        tiles = read_tiles(
            slide, read.coords[:rows], tile_size=read.tile_size, downsample=read.downsample, transform=prep
        )
        x = to_input(torch.from_numpy(tiles), model.mean, model.std, dev)
    return choose_inference_precision(
        model.encoder,
        x,
        dev,
        precision,
        task="predict",
        name=model.encoder.spec.name,
        weights_id=weights_hash(model.encoder) if x is not None else "",
        batch_size=batch_size,
    )


def heatmap(
    thumb: np.ndarray, grid: Any, values: np.ndarray, *, bounds=None, alpha: float = 0.5
) -> np.ndarray:
    """``thumb`` with each grid tile painted by ``values`` (0-1, colour map 'jet': blue low, red high).

    ``bounds`` is the slide's ``(x, y, width, height)`` content box the thumbnail shows (default: the tiles' span).
    """
    import cv2

    rows, cols = thumb.shape[:2]
    bx, by, bw, bh = bounds if bounds is not None else (0, 0, cols, rows)
    sx, sy = cols / float(bw), rows / float(bh)
    value_map = np.zeros((rows, cols), dtype=np.float32)
    weight = np.zeros((rows, cols), dtype=np.float32)
    ext = grid.extent
    for (x, y), v in zip(grid.coords, values, strict=True):
        x0, y0 = int((x - bx) * sx), int((y - by) * sy)
        x1 = max(x0 + 1, int(np.ceil((x - bx + ext) * sx)))
        y1 = max(y0 + 1, int(np.ceil((y - by + ext) * sy)))
        value_map[max(y0, 0) : y1, max(x0, 0) : x1] += v
        weight[max(y0, 0) : y1, max(x0, 0) : x1] += 1
    covered = weight > 0
    value_map[covered] /= weight[covered]
    colours = cv2.applyColorMap((np.clip(value_map, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)
    out = thumb.copy()
    out[covered] = (thumb[covered] * (1 - alpha) + colours[covered] * alpha).astype(np.uint8)
    return out


def _write_cams(store, key, cams, proba, read, gkey, thumb, bounds, out_dir: Path, overwrite: bool) -> str:
    """Store the per-tile and stitched class activation maps; draw ``cam.png`` over the thumbnail."""
    import cv2

    from eosin.train._cam import stitch_cams
    from eosin.viz import save_png

    stitched, covered = stitch_cams(cams, read.coords, read.extent, shape=thumb.shape[:2], bounds=bounds)
    attrs = {
        "grid": gkey,
        "method": "Grad-CAM (pytorch-grad-cam) of the predicted class, each tile's map scaled to 0-1",
        "tile_extent": float(read.extent),
        "stitched_bounds": [float(b) for b in bounds],
        "order": "rows follow the grid's tile order; coords are the level-0 x, y of the tiles read",
    }
    arrays = {
        "cam": cams,
        "pred": proba.argmax(axis=1).astype(np.int32),
        "coords": read.coords.astype(np.int64),
        "stitched": stitched.astype(np.float16),
    }
    store.write_group(CAMS_KIND, key, arrays, attrs, overwrite=overwrite)
    colours = cv2.cvtColor(
        cv2.applyColorMap((np.clip(stitched, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET),
        cv2.COLOR_BGR2RGB,
    )
    picture = thumb.copy()
    picture[covered] = (thumb[covered] * 0.5 + colours[covered] * 0.5).astype(np.uint8)
    return str(save_png(out_dir / "cam.png", picture))


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._+=-]", "_", name)

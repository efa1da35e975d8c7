"""The per-slide QC stage: artefact masks on a thumbnail, per-tile flags in the store, pictures and metrics.

A pure function of (slide path, parameters), like the stages of :mod:`eosin.run._stages`, so a cohort runs
through :func:`eosin.run.map_slides` on any executor.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

__all__ = ["QC_SIDE", "qc_image", "qc_stage"]

#: the QC image is at least this many pixels on its longer side (or at the tissue masks' resolution if finer)
QC_SIDE = 1600
#: longer side of the pictures for people (thumbnail, overlay, tiles)
PICTURE_SIDE = 1200


def qc_image(slide: Any, masks: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
    """The slide's QC image (RGB), its tissue and pen masks at that size, and its ``(dx, dy)`` downsample."""
    import cv2

    _, _, bw, bh = slide.bounds
    mdx, mdy = _pair(masks.downsample)
    ds = max(1.0, min((mdx + mdy) / 2, max(bw, bh) / QC_SIDE))
    rgb = slide.thumbnail(downsample=ds)
    rows, cols = rgb.shape[:2]
    size = (cols, rows)
    tissue = cv2.resize(masks.tissue.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    pen = cv2.resize(masks.pen.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return rgb, tissue, pen, (bw / cols, bh / rows)


def qc_stage(
    job: Any,
    *,
    mpp: float = 0.5,
    tile_size: int = 256,
    min_tissue: float = 0.5,
    tissue_mpp: float = 8.0,
    slide_mpp: float | None = None,
    backend: str | None = None,
    blur_threshold: float = 8.0,
    min_fraction: float = 0.25,
    artefact_model: Any = None,
    artefact_threshold: float = 0.5,
) -> dict[str, Any]:
    """QC one slide; write pictures and ``metrics.json`` into ``job.out_dir`` and ``qc/<grid key>`` into its store.

     The tile grid is at ``mpp`` when the slide's resolution is trustworthy (or ``slide_mpp`` overrides it),
     else at the slide's native resolution (downsample 1); the tiles are read to measure their focus.

     ``artefact_model`` (a checkpoint folder or a loaded classifier with an ``artefact`` class, see
     :func:`~eosin.qc.artefact_map`) adds the learned detector: its per-pixel map over the QC image, thresholded
     at ``artefact_threshold``, is the ``learned_artefact`` layer, mask and tile flag; each tile's mean
     probability is stored as ``learned_artefact_probability``.

     Returns the slide's metrics (the row of the cohort report).

     Raises :class:`~eosin.errors.NoTissueError` (as ``eosin tile`` does) when no tile reaches ``min_tissue``
    , after writing the pictures and ``metrics.json``; its ``record`` holds the metrics.
    """
    import cv2

    from eosin.qc._artefacts import coverslip_edges, dark_regions, stain_masks, stain_stats
    from eosin.qc._flags import FLAGS, tile_qc
    from eosin.qc._focus import focus_score
    from eosin.qc._learned import artefact_map, load_artefact_model
    from eosin.qc._pictures import draw_tile_flags, qc_overlay
    from eosin.errors import NoTissueError
    from eosin.run import job_store, load_or_detect_tissue
    from eosin.slide import open_slide
    from eosin.tiles import TileGrid, iter_tiles, make_grid

    t0 = time.perf_counter()
    warnings: list[str] = []
    model = artefact_model
    if isinstance(model, (str, os.PathLike)):
        model = load_artefact_model(model)  # before any work: a bad path fails the slide at once
    learned_prob = None
    with open_slide(job.path, slide_mpp=slide_mpp, backend=backend) as slide:
        job.out_dir.mkdir(parents=True, exist_ok=True)
        store = job_store(job, slide)
        masks, _ = load_or_detect_tissue(slide, store, tissue_mpp=tissue_mpp)
        rgb, tissue, pen, ds = qc_image(slide, masks)
        origin = _pair(masks.origin)
        brightfield = slide.is_brightfield
        empty = np.zeros_like(tissue)
        if brightfield:
            stains = stain_masks(rgb, tissue)
            layers = {
                "dark": dark_regions(rgb, tissue),
                "edge": coverslip_edges(rgb, tissue),
                "stain": stains["over"] | stains["clipped"],
            }
            stats = stain_stats(rgb, tissue, masks=stains)
        else:
            warnings.append("not brightfield: stain, dark-region and coverslip detectors skipped")
            layers = {"dark": empty, "edge": empty, "stain": empty}
            stats = {}
        if model is not None:
            if brightfield:
                side = getattr(model, "meta", {}).get("image_side")  # the training thumbnails' scale
                learned_prob = artefact_map(rgb, model, image_side=side)
                layers["learned_artefact"] = learned_prob >= artefact_threshold
            else:
                warnings.append("not brightfield: the learned artefact detector skipped")
                layers["learned_artefact"] = empty

        if slide.mpp_problem() is None:
            grid = make_grid(slide, masks, mpp=mpp, tile_size=tile_size, min_tissue=min_tissue)
        else:
            grid = make_grid(slide, masks, downsample=1.0, tile_size=tile_size, min_tissue=min_tissue)
            warnings.append(f"mpp {slide.mpp_problem()}: tiles at the native resolution (give --slide-mpp)")
        if store.has("grids", grid.key):
            grid = store.grid(grid.key)
        elif len(grid):
            store.write_group("grids", grid.key, *grid.to_group())
        scores = np.empty(len(grid), np.float32)
        for batch in iter_tiles(slide, grid, batch_size=32, workers=0):
            scores[batch.indices] = focus_score(batch.images)
        # tile coverage from the layers averaged down to the tissue masks' grid (exact areas, far fewer pixels)
        rows, cols = masks.tissue.shape
        coarse = {
            k: cv2.resize(v.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
            for k, v in layers.items()
        }
        tiles = tile_qc(
            grid,
            coarse,
            downsample=masks.downsample,
            origin=origin,
            blur_score=scores,
            blur_threshold=blur_threshold,
            min_fraction=min_fraction,
            probabilities=None
            if learned_prob is None
            else {
                "learned_artefact": cv2.resize(learned_prob, (cols, rows), interpolation=cv2.INTER_AREA)
            },
        )
        if len(grid):
            arrays, attrs = tiles.to_group()
            store.write_group("qc", grid.key, arrays, attrs, overwrite=True)
        if not tissue.any():
            warnings.append("no tissue found")
        elif not len(grid):
            warnings.append(
                f"no {tile_size}-px tile has {min_tissue:.0%} tissue: focus not measured (lower --min-tissue or --size)"
            )

        # pictures for people at most PICTURE_SIDE pixels a side; masks at the QC image's full size
        small, k = _shrink(rgb)
        save_png(job.out_dir / "thumbnail.png", small)
        save_png(
            job.out_dir / "overlay.png",
            qc_overlay(
                small, _shrink(tissue)[0], {k: _shrink(v)[0] for k, v in {"pen": pen, **layers}.items()}
            ),
        )
        save_png(
            job.out_dir / "tiles.png",
            draw_tile_flags(
                small, grid, tiles.flags, FLAGS, downsample=(ds[0] * k, ds[1] * k), origin=origin
            ),
        )
        for name, mask in {"tissue": tissue, "pen": pen, **layers}.items():
            save_png(job.out_dir / f"{name}.png", mask)
        if learned_prob is not None:  # the probability itself, 0-255
            save_png(job.out_dir / "learned_artefact_map.png", np.round(learned_prob * 255).astype(np.uint8))

    n_tissue = int(tissue.sum())

    def of_tissue(mask: np.ndarray) -> float | None:
        return round(float((mask & tissue).sum() / n_tissue), 5) if n_tissue else None

    n = len(grid)
    flag_names = [k for k in FLAGS if k != "learned_artefact" or model is not None]
    learned: dict[str, Any] = {}
    if model is not None:
        learned = {
            "learned_artefact_fraction": round(float(layers["learned_artefact"].mean()), 5),
            "learned_artefact_model": (
                str(artefact_model) if isinstance(artefact_model, (str, os.PathLike)) else None
            ),
        }
    metrics: dict[str, Any] = {
        "slide": str(job.path),
        "name": job.path.name,
        "out": job.out_dir.name,
        "width": slide.width,
        "height": slide.height,
        "mpp": None if slide.mpp_problem() else round(slide.require_mpp(), 5),
        "tissue_fraction": round(float(tissue.mean()), 5),
        "pen_fraction": round(float(pen.mean()), 5),
        "dark_fraction": of_tissue(layers["dark"]),
        "edge_fraction": round(float(layers["edge"].mean()), 5),
        "stain_fraction": of_tissue(layers["stain"]),
        **learned,
        **{f"stain_{k}": v for k, v in stats.items()},
        "grid": grid.key,
        "grid_mpp": grid.mpp,
        "n_tiles": n,
        "blur_fraction": round(float(tiles.flagged("blur").mean()), 5) if n else None,
        "blur_score_median": round(float(np.median(scores)), 3) if n else None,
        "flagged_tile_fraction": round(float((~tiles.ok).mean()), 5) if n else None,
        **{f"tiles_{k}": int(tiles.flagged(k).sum()) for k in FLAGS if k in flag_names},
        "warnings": warnings,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    from eosin.io import atomic_write_text

    atomic_write_text(job.out_dir / "metrics.json", json.dumps(metrics, indent=1))
    if not n:
        # the same rule as eosin tile: a slide with no tile at the tissue threshold failed (exit 1); the pictures
        # and metrics are written first, and the report shows the metrics with the error
        at = f"{grid.mpp:g} µm/px" if grid.mpp else "the native resolution"
        error = NoTissueError(
            f"no tile of {tile_size} px at {at} has at least {min_tissue:.0%} tissue.",
            path=job.path,
            fix=f"look at {job.out_dir / 'overlay.png'}; lower --min-tissue or --size if the slide holds tissue",
        )
        error.record = metrics
        raise error
    return metrics


def _shrink(image: np.ndarray) -> tuple[np.ndarray, float]:
    """``image`` shrunk to at most :data:`PICTURE_SIDE` pixels a side, and the factor it was shrunk by."""
    import cv2

    k = max(image.shape[:2]) / PICTURE_SIDE
    if k <= 1:
        return image, 1.0
    size = (max(1, round(image.shape[1] / k)), max(1, round(image.shape[0] / k)))
    if image.dtype == bool:
        return cv2.resize(image.view(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0, k
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), k


def save_png(path: Any, array: np.ndarray) -> None:
    """A PNG written atomically with fast compression (QC pictures are many and large)."""
    import cv2

    from eosin.io import atomic_write_bytes

    a = np.asarray(array)
    a = a.astype(np.uint8) * 255 if a.dtype == bool else a
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", a, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - encoding uint8 arrays does not fail
        raise OSError(f"could not encode {path}")
    atomic_write_bytes(path, data.tobytes())


def _pair(value: Any) -> tuple[float, float]:
    if np.ndim(value) == 0:
        return float(value), float(value)
    return float(value[0]), float(value[1])

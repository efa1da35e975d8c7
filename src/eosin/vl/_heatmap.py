"""Text-to-region heatmaps: each tile of a slide scored against typed concepts, stored and drawn over the slide.

The scores go into the store as ``text_heatmap/<key>`` (docs/format.md), aligned with the grid's tiles, so the
viewer and exports read them like any per-tile array; the picture is one panel per prompt over the thumbnail.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import UsageError
from eosin.io import param_digest

__all__ = ["draw_heatmaps", "heatmap_key", "text_heatmap"]


def heatmap_key(model_name: str, grid_key: str, prompts: Sequence[str], weights_id: str) -> str:
    """``<model>--<grid>--<digest>``: the digest (6 hex of SHA-1) covers the prompts and the weights."""
    digest = param_digest([list(prompts), weights_id])
    import re

    return f"{re.sub(r'[^A-Za-z0-9._+=-]', '_', model_name)}--{grid_key}--{digest}"


def text_heatmap(
    store: str | os.PathLike[str],
    texts: Sequence[str],
    *,
    model: Any,
    grid_key: str | None = None,
    png: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score every tile of a store's grid against each text; write ``text_heatmap/<key>`` and a PNG.

    Each text is one prompt (a list of texts gives one panel each). Stored per tile: ``similarity`` (n, P) cosine
    of tile and text embeddings, ``proba`` (n, P) softmax over the texts of ``logit_scale * similarity`` (when
    P > 1), and ``coords``. The PNG shows each text's similarity rescaled to 0-1 over the slide's tiles (min to
    max within the slide, one colour scale per panel, said in the panel title), or its softmax probability when
    several texts compete.

    Returns a summary (store, key, png, per-text top tile) with the model's record.
    """
    from eosin.io import SlideStore
    from eosin.vl._models import load_vl_model
    from eosin.vl._sources import iter_sources
    from eosin.vl._zeroshot import scores

    texts = [str(t) for t in texts]
    if not texts or not all(t.strip() for t in texts):
        raise UsageError("give at least one non-empty --text.", fix='e.g. --text "tumour" --text "stroma"')
    model = load_vl_model(model)
    slide_store = SlideStore.open(store)
    gkey = slide_store.pick("grids", grid_key)
    text_emb = model.encode_text(texts)
    sims, coords = [], []
    for chunk in iter_sources(
        [store],
        input_size=model.input_size,
        native_mpp=model.native_mpp,
        batch_size=batch_size,
        grid_key=gkey,
        workers=workers,
        progress=progress,
    ):
        sims.append(model.encode_images(chunk.images, batch_size=batch_size) @ text_emb.T)
        coords.append(np.stack([chunk.x, chunk.y], axis=1))
    similarity = np.concatenate(sims).astype(np.float32) if sims else np.zeros((0, len(texts)), np.float32)
    _, proba = scores(similarity, np.eye(len(texts), dtype=np.float32), model.logit_scale, model.logit_bias)
    key = heatmap_key(model.name, gkey, texts, model.weights_id)
    attrs = {
        "prompts": texts,
        "grid": gkey,
        "n_tiles": int(len(similarity)),
        "mode": "softmax" if len(texts) > 1 else "similarity",
        "logit_scale": model.logit_scale,
        **model.describe(),
    }
    arrays = {
        "similarity": similarity,
        "proba": proba.astype(np.float32),
        "coords": np.concatenate(coords) if coords else np.zeros((0, 2), np.int64),
    }
    slide_store.write_group("text_heatmap", key, arrays, attrs, overwrite=True)
    out_png = None
    if png is not None:
        out_png = str(draw_heatmaps(slide_store, gkey, similarity, proba, texts, png))
    top = {
        t: arrays["coords"][int(similarity[:, i].argmax())].tolist() if len(similarity) else None
        for i, t in enumerate(texts)
    }
    return {
        "store": str(slide_store.path),
        "key": key,
        "png": out_png,
        "n_tiles": int(len(similarity)),
        "top_tile_xy": top,
        **model.describe(),
    }


def draw_heatmaps(store: Any, grid_key: str, similarity, proba, texts, path) -> Path:
    """One panel per text: the slide thumbnail with each tile coloured by its score ('jet', blue low, red high)."""
    import cv2

    from eosin.slide import open_slide
    from eosin.viz import save_png

    record = store.slide or {}
    grid = store.grid(grid_key)
    slide_mpp = record.get("mpp_x") if record.get("mpp_source") == "override" else None
    with open_slide(record["path"], slide_mpp=slide_mpp) as slide:
        thumb = slide.thumbnail(max_size=800)
        bounds = slide.bounds
    panels = []
    for i, text in enumerate(texts):
        if len(texts) > 1:
            values, scale = proba[:, i], "softmax over the prompts, 0-1"
        else:
            s = similarity[:, i]
            lo, hi = float(s.min(initial=0)), float(s.max(initial=0))
            values = (s - lo) / max(hi - lo, 1e-6)
            scale = f"cosine {lo:.3f} (blue) - {hi:.3f} (red)"
        panel = _paint(thumb, grid, values, bounds)
        band = np.full((44, panel.shape[1], 3), 255, np.uint8)
        cv2.putText(band, text[:60], (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(band, scale, (6, 38), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
        panels.append(np.concatenate([band, panel]))
        panels.append(np.full((panels[-1].shape[0], 8, 3), 255, np.uint8))
    return save_png(path, np.concatenate(panels[:-1], axis=1))


def _paint(thumb: np.ndarray, grid: Any, values: np.ndarray, bounds, alpha: float = 0.55) -> np.ndarray:
    import cv2

    rows, cols = thumb.shape[:2]
    bx, by, bw, bh = bounds
    sx, sy = cols / float(bw), rows / float(bh)
    vmap = np.zeros((rows, cols), np.float32)
    weight = np.zeros((rows, cols), np.float32)
    ext = grid.extent
    for (x, y), v in zip(grid.coords, values):
        x0, y0 = max(int((x - bx) * sx), 0), max(int((y - by) * sy), 0)
        x1, y1 = int(np.ceil((x - bx + ext) * sx)), int(np.ceil((y - by + ext) * sy))
        vmap[y0:y1, x0:x1] += v
        weight[y0:y1, x0:x1] += 1
    covered = weight > 0
    vmap[covered] /= weight[covered]
    colours = cv2.cvtColor(
        cv2.applyColorMap((np.clip(vmap, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB
    )
    out = thumb.copy()
    out[covered] = (thumb[covered] * (1 - alpha) + colours[covered] * alpha).astype(np.uint8)
    return out

"""Per-tile attention of a trained MIL aggregator written back into each slide's store, with a heatmap PNG."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["ATTENTION_KIND", "write_attention"]

ATTENTION_KIND = "attention"


def write_attention(
    bags: Any,
    i: int,
    agg: Any,
    *,
    key: str,
    role: str,
    heatmap_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Write slide ``i``'s per-tile attention into ``attention/<key>`` of its store; draw a heatmap PNG.

    The group holds ``attention`` ``(n_tiles,)`` float32 (sums to 1; rows in the bag's order, which is the grid's
    tile order) and ``coords`` ``(n_tiles, 2)`` level-0 x, y; its attributes name the aggregator, the bag group,
    the grid, the classes, the predicted class and the slide's role (``train``/``val``/``test``). The heatmap shows
    attention divided by its maximum over the slide's thumbnail (needs the slide file the store records).

    Returns
    -------
    dict
        slide_id, store, key, n_tiles, heatmap (path or None), note (why no heatmap, or None).
    """
    from eosin.io import SlideStore

    store = SlideStore.open(bags.stores[i])
    bag = bags[i]
    attention = agg.attention(bag).astype(np.float32)
    source = store.read_group(bags.kind, bags.keys[i])
    src_attrs = dict(source.attrs)
    coords = np.asarray(source["coords"][...], dtype=np.int64) if "coords" in source else None
    grid_key = src_attrs.get("grid")
    if coords is None and grid_key is not None:
        coords = np.asarray(store.read_group("grids", grid_key)["coords"][...], dtype=np.int64)
    proba = agg.predict_proba([bag])[0]
    attrs = {
        "aggregator": agg.name,
        "source": f"{bags.kind}/{bags.keys[i]}",
        "grid": grid_key,
        "classes": [str(c) for c in agg.classes_],
        "pred": str(agg.classes_[int(np.argmax(proba))]),
        "role": role,
        "order": "rows follow the grid's tile order",
    }
    arrays = {"attention": attention}
    if coords is not None:
        arrays["coords"] = coords
    store.write_group(ATTENTION_KIND, key, arrays, attrs, overwrite=True)
    out = {
        "slide_id": str(bags.slide_ids[i]),
        "store": str(store.path),
        "key": key,
        "n_tiles": int(attention.size),
        "heatmap": None,
        "note": None,
    }
    if heatmap_path is not None:
        out["heatmap"], out["note"] = _attention_heatmap(store, grid_key, attention, heatmap_path)
    return out


def _attention_heatmap(
    store: Any, grid_key: str | None, attention: np.ndarray, path
) -> tuple[str | None, str | None]:
    from eosin.errors import EosinError
    from eosin.tiles import TileGrid
    from eosin.train import heatmap
    from eosin.viz import save_png

    record = store.slide or {}
    if grid_key is None or record.get("path") is None:
        return None, "no heatmap: the store records no grid or slide path"
    group = store.read_group("grids", grid_key)
    grid = TileGrid.from_group(group, group.attrs)
    if len(grid) != attention.size:
        return None, f"no heatmap: the grid has {len(grid)} tiles, the bag {attention.size}"
    slide_mpp = record.get("mpp_x") if record.get("mpp_source") == "override" else None
    try:
        from eosin.slide import open_slide

        with open_slide(record["path"], slide_mpp=slide_mpp) as slide:
            thumb = slide.thumbnail(max_size=1024)
            bounds = slide.bounds
    except (EosinError, OSError) as exc:
        return None, f"no heatmap: cannot open the slide ({exc})"
    values = attention / max(float(attention.max()), 1e-12)
    return str(save_png(path, heatmap(thumb, grid, values, bounds=bounds))), None

"""Layers over a slide, found in its stores: masks, per-tile scores, segmentation maps and contours, GeoJSON.

Every layer is placed in level-0 coordinates (its ``bounds``: ``[x0, y0, x1, y1]``) and drawn by the server as an
RGBA PNG (transparent where there is no data), or served as GeoJSON for vector layers. Per-tile layers are found
generically: any group whose rows follow a grid's tiles (it has ``coords``, or a ``grid`` attribute naming
``grids/<key>``, or is ``qc/<grid key>``) gives one layer per score column, so new stages (text-to-region scores,
say) show up without viewer changes. A layer's id is ``s<store>~<kind>~<key>~<array>[~<column>]``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import StoreError, UsageError

__all__ = ["COLORMAPS", "Layer", "find_layers", "render_layer", "tile_values", "vector_layer"]

COLORMAPS = ("viridis", "magma", "inferno", "plasma", "turbo", "jet", "coolwarm", "gray")
MASK_COLORS = {"tissue": (0, 170, 0), "pen": (0, 90, 255)}
FLAG_COLORS = [(230, 25, 75), (0, 130, 200), (60, 60, 60), (245, 130, 48), (145, 30, 180), (70, 240, 240)]
_MAX_SIDE = 2048  # rendered maps are at most this many pixels a side
_SKIP_KINDS = {"features", ".staging", "annotations"}
_MAX_COLUMNS = 64


@dataclass
class Layer:
    """A layer the viewer can show."""

    id: str
    name: str
    type: str  # "mask" | "categorical" | "tiles" | "map" | "vector"
    group: str
    bounds: list[float] | None = None
    continuous: bool = False
    legend: dict[str, Any] = field(default_factory=dict)
    store: int = 0

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "group": self.group,
            "bounds": self.bounds,
            "continuous": self.continuous,
            "legend": self.legend,
        }


def _lid(*parts: Any) -> str:
    return "~".join(str(p) for p in parts)


def _open(store_path: Path):
    from eosin.io import SlideStore

    return SlideStore.open(store_path)


def find_layers(stores: list[Path]) -> list[Layer]:
    """Every layer of the stores of one slide (a store that cannot be read is skipped).

    A group found in two stores of the slide under the same key (``eosin tissue`` and ``eosin tile`` both write
    ``tissue/<key>``) is the same result: it is listed once, from the first store.
    """
    out: list[Layer] = []
    seen: set[str] = set()
    for i, path in enumerate(stores):
        try:
            store = _open(path)
            kinds = store.kinds()
        except (StoreError, OSError):
            continue
        for kind in kinds:
            if kind in _SKIP_KINDS:
                continue
            for key in store.keys(kind):
                if f"{kind}/{key}" in seen:
                    continue
                seen.add(f"{kind}/{key}")
                try:
                    out.extend(_group_layers(store, i, kind, key))
                except (StoreError, KeyError, ValueError, OSError):
                    continue
        for geo in sorted(path.parent.glob("*.geojson")):
            out.append(
                Layer(
                    _lid(f"s{i}", "file", geo.name),
                    f"{geo.name}",
                    "vector",
                    f"file:{path.parent}",
                    store=i,
                )
            )
    # the same name from two groups of one kind (two tissue detections, say): tell them apart by key
    names = [layer.name for layer in out]
    for layer in out:
        if names.count(layer.name) > 1:
            if layer.group.startswith("file:"):
                where = "/".join(Path(layer.group[5:]).parts[-2:])
            else:
                where = layer.group.split("/", 1)[-1]
            layer.name = f"{layer.name} ({where})"
    return out


def _group_layers(store: Any, i: int, kind: str, key: str) -> Iterator[Layer]:
    group = store.read_group(kind, key)
    attrs = group.attrs
    where = f"{kind}/{key}"
    if kind == "tissue":
        rows, cols = group["tissue"].shape
        bounds = _map_bounds(attrs, rows, cols)
        for name in ("tissue", "pen"):
            if name in group:
                color = MASK_COLORS[name]
                yield Layer(
                    _lid(f"s{i}", kind, key, name),
                    f"{name} mask",
                    "mask",
                    where,
                    bounds,
                    legend={"type": "categorical", "items": [{"label": name, "color": _css(color)}]},
                    store=i,
                )
        if "sections" in group:
            n = int(attrs.get("n_sections") or 0)
            yield Layer(
                _lid(f"s{i}", kind, key, "sections"),
                "cross-sections",
                "categorical",
                where,
                bounds,
                legend={
                    "type": "categorical",
                    "items": [
                        {"label": f"section {k}", "color": _css(_section_color(k))} for k in range(1, n + 1)
                    ],
                },
                store=i,
            )
        return
    if kind == "segmentation":
        for name in ("foreground", "interior"):
            if name in group:
                rows, cols = group[name].shape
                yield Layer(
                    _lid(f"s{i}", kind, key, name),
                    f"segmentation {name}",
                    "map",
                    where,
                    _map_bounds(attrs, rows, cols),
                    continuous=True,
                    legend={"type": "continuous", "vmin": 0.0, "vmax": 1.0, "label": f"P({name})"},
                    store=i,
                )
        if "foreground" in group:
            yield Layer(
                _lid(f"s{i}", kind, key, "contours"),
                "segmentation contours",
                "vector",
                where,
                legend={"type": "categorical", "items": [{"label": "foreground >= 0.5", "color": "#ffd400"}]},
                store=i,
            )
        return
    tiles = _tile_geometry(store, kind, key, group)
    if tiles is None:
        return
    coords, extent, step = tiles
    n = len(coords)
    bounds = _tile_bounds(coords, step)
    for name in group:
        if name == "coords":
            continue
        array = group[name]
        if not array.shape or array.shape[0] != n:
            continue
        dtype = np.dtype(array.dtype)
        if name == "flags" and "bits" in attrs:
            bits = attrs["bits"]
            yield Layer(
                _lid(f"s{i}", kind, key, name),
                f"{kind} flags",
                "categorical",
                where,
                bounds,
                legend={
                    "type": "categorical",
                    "items": [
                        {"label": b, "color": _css(FLAG_COLORS[j % len(FLAG_COLORS)])}
                        for j, b in enumerate(sorted(bits, key=lambda k: bits[k]))
                    ],
                },
                store=i,
            )
            continue
        if dtype.kind != "f":  # scores; integer arrays (section labels, counts) are not heatmaps
            continue
        columns = [None] if array.ndim == 1 else list(range(array.shape[1])) if array.ndim == 2 else []
        if len(columns) > _MAX_COLUMNS:
            continue
        classes = attrs.get("classes") or attrs.get("prompts") or []
        for c in columns:
            label = name if c is None else f"{name}[{classes[c] if c < len(classes) else c}]"
            vmin, vmax = _range(kind, name, np.asarray(array) if c is None else np.asarray(array[:, c]))
            yield Layer(
                _lid(f"s{i}", kind, key, name, *([] if c is None else [c])),
                f"{kind}: {label}",
                "tiles",
                where,
                bounds,
                continuous=True,
                legend={"type": "continuous", "vmin": vmin, "vmax": vmax, "label": label},
                store=i,
            )


def _range(kind: str, name: str, values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if values.size == 0:
        return (0.0, 1.0)
    lo, hi = float(values.min()), float(values.max())
    lo = 0.0 if abs(lo) < 1e-9 else lo  # float noise around zero
    if kind == "attention":  # shown as attention / max, as attention.png does
        return (0.0, hi if hi > 0 else 1.0)
    if lo >= 0.0 and hi <= 1.0:  # probabilities and fractions
        return (0.0, 1.0)
    return (lo, hi if hi > lo else lo + 1.0)


def _tile_geometry(store: Any, kind: str, key: str, group: Any) -> tuple[np.ndarray, float, float] | None:
    """``(coords (n, 2), tile extent, grid step)`` in level-0 pixels of a per-tile group, or None."""
    grid_key = group.attrs.get("grid")
    if kind == "grids":
        grid_key, grid = key, group
    elif kind == "qc" and not grid_key:
        grid_key = key
    grid = None
    if isinstance(grid_key, str) and store.has("grids", grid_key):
        grid = store.read_group("grids", grid_key)
    if "coords" in group:
        coords = np.asarray(group["coords"])
    elif grid is not None:
        coords = np.asarray(grid["coords"])
    else:
        return None
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) == 0:
        return None
    if grid is not None and grid.attrs.get("extent"):
        extent = float(grid.attrs["extent"])
        step = float(grid.attrs.get("stride") or grid.attrs.get("tile_size")) * float(
            grid.attrs.get("downsample") or 1.0
        )
    else:
        xs = np.unique(coords[:, 0])
        ys = np.unique(coords[:, 1])
        diffs = np.concatenate([np.diff(xs), np.diff(ys)])
        diffs = diffs[diffs > 0]
        step = float(diffs.min()) if diffs.size else 256.0
        extent = step
    return coords, extent, step


def _tile_bounds(coords: np.ndarray, step: float) -> list[float]:
    x0, y0 = coords.min(0)
    x1, y1 = coords.max(0)
    return [float(x0), float(y0), float(x1 + step), float(y1 + step)]


def _map_bounds(attrs: dict[str, Any], rows: int, cols: int) -> list[float]:
    ds = attrs.get("downsample", 1.0)
    dx, dy = (ds, ds) if np.ndim(ds) == 0 else ds
    ox, oy = attrs.get("origin", (0.0, 0.0))
    return [float(ox), float(oy), float(ox + cols * dx), float(oy + rows * dy)]


def _css(color: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % tuple(int(c) for c in color)


def _section_color(k: int) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.75, 0.95)
    return (int(r * 255), int(g * 255), int(b * 255))


def colormap_stops(name: str, n: int = 8) -> list[str]:
    """CSS colours along a colour map, for the legend's gradient."""
    lut = _lut(name)
    return [_css(tuple(lut[int(round(k * 255 / (n - 1)))])) for k in range(n)]


_LUTS: dict[str, np.ndarray] = {}
_LUT_LOCK = threading.Lock()


def _lut(name: str) -> np.ndarray:
    if name not in COLORMAPS:
        raise UsageError(f"unknown colour map {name!r}; choose one of {', '.join(COLORMAPS)}.")
    with _LUT_LOCK:
        if name not in _LUTS:
            import matplotlib

            cmap = matplotlib.colormaps[name]
            _LUTS[name] = (cmap(np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
        return _LUTS[name]


# ---------------------------------------------------------------------- rendering
def _parse(layer_id: str) -> tuple[int, str, str, str, int | None]:
    parts = layer_id.split("~")
    if len(parts) not in (4, 5) or not parts[0].startswith("s") or not parts[0][1:].isdigit():
        raise KeyError(layer_id)
    col = int(parts[4]) if len(parts) == 5 else None
    return int(parts[0][1:]), parts[1], parts[2], parts[3], col


def _layer_by_id(stores: list[Path], layer_id: str | Layer) -> Layer:
    if isinstance(layer_id, Layer):
        return layer_id
    for layer in find_layers(stores):
        if layer.id == layer_id:
            return layer
    raise KeyError(layer_id)


def render_layer(stores: list[Path], layer_id: str | Layer, *, cmap: str = "viridis") -> bytes:
    """The layer as an RGBA PNG (transparent where there is no data); ``KeyError`` when the stores lack it."""
    from eosin.viewer._tiles import encode_image

    layer = _layer_by_id(stores, layer_id)
    layer_id = layer.id
    if layer.type == "vector":
        raise KeyError(layer_id)
    s, kind, key, name, col = _parse(layer_id)
    store = _open(stores[s])
    group = store.read_group(kind, key)
    if layer.type == "mask":
        mask = _strided(group[name]) != 0
        rgba = np.zeros(mask.shape + (4,), np.uint8)
        rgba[mask, :3] = MASK_COLORS[name]
        rgba[mask, 3] = 255
    elif layer.type == "map":
        values = _strided(group[name]).astype(np.float32) / 255.0
        rgba = _colorize(values, values > 0, cmap, 0.0, 1.0)
    elif kind == "tissue" and name == "sections":
        labels = _strided(group[name])
        rgba = np.zeros(labels.shape + (4,), np.uint8)
        for k in np.unique(labels[labels > 0]):
            rgba[labels == k, :3] = _section_color(int(k))
        rgba[labels > 0, 3] = 255
    else:
        rgba = _render_tiles(store, kind, key, group, name, col, layer, cmap)
    return encode_image(rgba, "png")


def _strided(array: Any) -> np.ndarray:
    rows, cols = array.shape[:2]
    step = max(1, int(np.ceil(max(rows, cols) / _MAX_SIDE)))
    if step == 1:
        return np.asarray(array)
    return np.asarray(array[::step, ::step])


def _colorize(values: np.ndarray, valid: np.ndarray, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    lut = _lut(cmap)
    scaled = np.clip((np.nan_to_num(values) - vmin) / (vmax - vmin if vmax > vmin else 1.0), 0, 1)
    rgba = np.zeros(values.shape + (4,), np.uint8)
    rgba[..., :3] = lut[(scaled * 255).round().astype(np.int64)]
    rgba[..., 3] = np.where(valid & np.isfinite(values), 255, 0)
    return rgba


def _cells(coords: np.ndarray, step: float, bounds: list[float]) -> tuple[np.ndarray, np.ndarray, int, int]:
    cols = np.round((coords[:, 0] - bounds[0]) / step).astype(np.int64)
    rows = np.round((coords[:, 1] - bounds[1]) / step).astype(np.int64)
    return rows, cols, int(rows.max()) + 1, int(cols.max()) + 1


def _render_tiles(store, kind, key, group, name, col, layer: Layer, cmap: str) -> np.ndarray:
    coords, _extent, step = _tile_geometry(store, kind, key, group)
    rows, cols, n_rows, n_cols = _cells(coords, step, layer.bounds)
    values = np.asarray(group[name])
    if col is not None:
        values = values[:, col]
    if name == "flags" and "bits" in group.attrs:
        bits = group.attrs["bits"]
        rgba = np.zeros((n_rows, n_cols, 4), np.uint8)
        order = sorted(bits, key=lambda k: bits[k])
        colors = np.zeros((len(values), 4), np.uint8)
        for j, b in reversed(list(enumerate(order))):  # lowest bit wins
            hit = (values.astype(np.int64) & int(bits[b])) != 0
            colors[hit, :3] = FLAG_COLORS[j % len(FLAG_COLORS)]
            colors[hit, 3] = 255
        rgba[rows, cols] = colors
        return rgba
    values = values.astype(np.float32)
    grid_values = np.full((n_rows, n_cols), np.nan, np.float32)
    grid_values[rows, cols] = values
    legend = layer.legend
    return _colorize(grid_values, np.isfinite(grid_values), cmap, legend["vmin"], legend["vmax"])


def tile_values(stores: list[Path], layer_id: str | Layer, x: float, y: float) -> dict[str, Any] | None:
    """The tile of a per-tile layer under level-0 point ``(x, y)`` and every value its group holds for it."""
    layer = _layer_by_id(stores, layer_id)
    layer_id = layer.id
    if layer.type not in ("tiles", "categorical") or (layer.group.startswith("tissue/")):
        raise KeyError(layer_id)
    s, kind, key, _name, _col = _parse(layer_id)
    store = _open(stores[s])
    group = store.read_group(kind, key)
    coords, extent, _step = _tile_geometry(store, kind, key, group)
    hit = np.nonzero(
        (coords[:, 0] <= x) & (x < coords[:, 0] + extent) & (coords[:, 1] <= y) & (y < coords[:, 1] + extent)
    )[0]
    if hit.size == 0:
        return None
    i = int(hit[0])
    values: dict[str, Any] = {}
    classes = group.attrs.get("classes") or group.attrs.get("prompts") or []
    for name in group:
        array = group[name]
        if name == "coords" or not array.shape or array.shape[0] != len(coords) or array.ndim > 2:
            continue
        if array.ndim == 2 and array.shape[1] > _MAX_COLUMNS:
            continue
        row = np.asarray(array[i])
        if row.ndim == 0:
            values[name] = _jsonable(row.item())
        else:
            labels = [str(classes[k]) if k < len(classes) else str(k) for k in range(row.shape[0])]
            values[name] = {lab: _jsonable(v) for lab, v in zip(labels, row.tolist())}
    return {
        "index": i,
        "x": int(coords[i, 0]),
        "y": int(coords[i, 1]),
        "extent": extent,
        "group": f"{kind}/{key}",
        "values": values,
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def vector_layer(stores: list[Path], layer_id: str | Layer) -> dict[str, Any]:
    """A vector layer as a GeoJSON FeatureCollection (level-0 pixels)."""
    layer = _layer_by_id(stores, layer_id)
    layer_id = layer.id
    if layer.type != "vector":
        raise KeyError(layer_id)
    parts = layer_id.split("~")
    s = int(parts[0][1:])
    if parts[1] == "file":
        from eosin.io import load_geojson

        features = load_geojson(stores[s].parent / parts[2])
        return {"type": "FeatureCollection", "features": features}
    _, kind, key, _name, _ = _parse(layer_id)
    from eosin.io import features_from_masks

    group = _open(stores[s]).read_group(kind, key)
    array = group["foreground"]
    rows, cols = array.shape
    step = max(1, int(np.ceil(max(rows, cols) / _MAX_SIDE)))
    mask = _strided(array) >= 128
    ds = group.attrs.get("downsample", 1.0)
    dx, dy = (ds, ds) if np.ndim(ds) == 0 else ds
    features = features_from_masks(
        {"Segmentation": (mask, (255, 212, 0))},
        downsample=(dx * step, dy * step),
        origin=tuple(group.attrs.get("origin", (0.0, 0.0))),
        object_type="detection",
    )
    return {"type": "FeatureCollection", "features": features}


def dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))

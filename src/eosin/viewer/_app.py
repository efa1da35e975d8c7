"""The web app: a cohort page, a slide page, and a JSON/image API over a :class:`Catalog`.

Endpoints (``{sid}`` is a slide id from the catalog; nothing is addressed by file path):

==============================================  ======================================================
``GET /``                                       cohort page: thumbnail, doctor problems, QC, layers
``GET /slides/{sid}``                           slide page (Leaflet deep-zoom viewer)
``GET /api/slides``                             the cohort as JSON
``GET /api/slides/{sid}``                       pyramid, doctor record, layers, annotation files
``GET /api/slides/{sid}/thumbnail.jpg``         thumbnail
``GET /api/slides/{sid}/tiles/{z}/{x}_{y}.jpg``  a deep-zoom tile (``.webp`` too)
``GET /api/slides/{sid}/layers/{lid}.png``      a raster layer (``?cmap=``)
``GET /api/slides/{sid}/layers/{lid}.geojson``  a vector layer
``GET /api/slides/{sid}/layers/{lid}/value``    the tile under ``?x=&y=`` (level-0) and its scores
``GET|PUT /api/slides/{sid}/annotations/{f}``   read / write an annotation file (in the output folder)
``POST /api/slides/{sid}/import?name=f``        check a QuPath GeoJSON export, save it, return it
==============================================  ======================================================

Errors are JSON ``{"error": message}`` (pages: one line of text), never a traceback.
"""

from __future__ import annotations

import html
import json
import re
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request  # this module loads only when the viewer starts
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from eosin.errors import EosinError, UsageError
from eosin.viewer._catalog import Catalog, SlideEntry, safe_path
from eosin.viewer._tiles import MEDIA, DeepZoom, TileCache, encode_image

__all__ = ["create_app"]

STATIC = Path(__file__).resolve().parent / "static"
_TILE = re.compile(r"(\d+)_(\d+)\.(jpg|jpeg|webp)")
_CACHE_HEADERS = {"Cache-Control": "max-age=3600"}
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.geojson$")


class _State:
    def __init__(self, catalog: Catalog, cache_bytes: int, tile_format: str, quality: int):
        self.catalog = catalog
        self.cache = TileCache(cache_bytes)
        self.tile_format = tile_format
        self.quality = quality
        self._zooms: dict[str, DeepZoom] = {}
        self._layers: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def entry(self, sid: str) -> SlideEntry:
        entry = self.catalog.get(sid)
        if entry is None:
            raise _NotFound(f"no slide {sid!r} is served here (see the cohort page for the slides).")
        return entry

    def zoom(self, entry: SlideEntry) -> DeepZoom:
        dz = self._zooms.get(entry.id)
        if dz is None:
            if not entry.readable:
                problem = next(p for p in entry.record["problems"] if p.get("code") == "unreadable")
                raise _NotFound(f"slide {entry.name} cannot be shown: {problem['message']}")
            with entry.open() as slide:
                dz = DeepZoom.for_slide(slide)
            with self._lock:
                self._zooms[entry.id] = dz
        return dz

    def layers(self, entry: SlideEntry) -> list:
        """The slide's layers, found again when a store changed (a stage run while the viewer is open)."""
        stamp = _stores_stamp(entry.stores)
        cached = self._layers.get(entry.id)
        if cached is None or cached[0] != stamp:
            from eosin.viewer._layers import find_layers

            cached = (stamp, find_layers(entry.stores))
            with self._lock:
                self._layers[entry.id] = cached
        return cached[1]

    def layer(self, entry: SlideEntry, lid: str):
        for layer in self.layers(entry):
            if layer.id == lid:
                return layer
        raise _NotFound(
            f"slide {entry.name} has no layer {lid!r} in its stores "
            f"({len(self.layers(entry))} layers; /api/slides/{entry.id} lists them)."
        )


def _stores_stamp(stores: list[Path]) -> tuple:
    """Modification times of the stores, their kind folders (publishing a group renames into one) and the GeoJSON
    files beside them: a changed stamp means the layers must be found again."""
    stamp = []
    for store in stores:
        if not store.is_dir():
            continue
        folders = [store, *(p for p in store.iterdir() if p.is_dir() and not p.name.startswith("."))]
        stamp.extend((str(f), f.stat().st_mtime_ns) for f in folders)
        stamp.extend((str(g), g.stat().st_mtime_ns) for g in store.parent.glob("*.geojson"))
    return tuple(stamp)


class _NotFound(EosinError):
    pass


def create_app(
    catalog: Catalog,
    *,
    cache_bytes: int = 256 * 2**20,
    tile_format: str = "jpg",
    quality: int = 80,
) -> Any:
    """The FastAPI app serving ``catalog``; run it with uvicorn (:func:`eosin.viewer.serve` does)."""
    state = _State(catalog, cache_bytes, tile_format, quality)
    # the doctor's records (the cohort page needs them) are gathered in the background from the start
    threading.Thread(target=lambda: [entry.record for entry in catalog], daemon=True).start()
    app = FastAPI(title="eosin viewer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.viewer = state

    @app.exception_handler(EosinError)
    async def _eosin_error(request: Request, exc: EosinError):
        status = 404 if isinstance(exc, _NotFound) else 400 if exc.exit_code == 2 else 422
        return _error(request, status, str(exc))

    @app.exception_handler(Exception)
    async def _any_error(request: Request, exc: Exception):  # no traceback reaches a page
        return _error(request, 500, f"internal error: {type(exc).__name__}: {exc}".splitlines()[0])

    def _error(request: Request, status: int, message: str):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status)
        return HTMLResponse(_page("eosin viewer", f"<p class='error'>{html.escape(message)}</p>"), status)

    import xstatic.pkg.leaflet as leaflet

    app.mount("/static/leaflet", StaticFiles(directory=leaflet.BASE_DIR), name="leaflet")
    app.mount("/static/eosin", StaticFiles(directory=STATIC), name="eosin")

    # ------------------------------------------------------------------ pages
    @app.get("/", response_class=HTMLResponse)
    def cohort_page():
        return HTMLResponse(_cohort_html(state))

    @app.get("/slides/{sid}", response_class=HTMLResponse)
    def slide_page(sid: str):
        entry = state.entry(sid)
        text = (STATIC / "slide.html").read_text(encoding="utf-8")
        text = text.replace("{{SID}}", html.escape(entry.id)).replace("{{NAME}}", html.escape(entry.name))
        return HTMLResponse(text)

    # ------------------------------------------------------------------ API
    @app.get("/api/slides")
    def slides():
        return [_summary(state, e) for e in catalog]

    @app.get("/api/slides/{sid}")
    def slide_info(sid: str):
        entry = state.entry(sid)
        dz = state.zoom(entry)
        from eosin.viewer._layers import COLORMAPS, colormap_stops

        return {
            **_summary(state, entry),
            "deepzoom": dz.info(),
            "tile_url": f"/api/slides/{sid}/tiles/{{z}}/{{x}}_{{y}}.{state.tile_format}",
            "colormaps": {name: colormap_stops(name) for name in COLORMAPS},
            "annotation_files": _annotation_files(catalog, sid),
            "out": str(catalog.out_dir(sid)),
        }

    @app.get("/api/slides/{sid}/thumbnail.jpg")
    def thumbnail(sid: str):
        entry = state.entry(sid)
        state.zoom(entry)  # an unreadable slide: 404 with the reason

        def make() -> bytes:
            with entry.open() as slide:
                picture = slide.thumbnail(max_size=256)
            return encode_image(picture, "jpg", quality=85)

        data = state.cache.get_or_make((sid, "thumb"), make)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def tile(request: Request):
        # A plain Starlette route, answered in the event loop on a cache hit; only a miss goes to a worker
        # thread. Under load this halves the per-request cost against a FastAPI endpoint run in the thread pool.
        params = request.path_params
        sid, z, name = params["sid"], params["z"], params["name"]
        m = _TILE.fullmatch(name)
        if m is None:
            raise _NotFound(f"no tile {name!r}: tiles are named <x>_<y>.jpg or .webp.")
        col, row, fmt = int(m.group(1)), int(m.group(2)), m.group(3)
        key = (sid, z, col, row, fmt)
        data = state.cache.get(key)
        if data is None:
            data = await run_in_threadpool(_make_tile, state, sid, z, col, row, fmt)
            state.cache.put(key, data)
        return Response(data, media_type=MEDIA[".webp" if fmt == "webp" else ".jpg"], headers=_CACHE_HEADERS)

    app.router.routes.insert(0, Route("/api/slides/{sid}/tiles/{z:int}/{name}", tile, methods=["GET"]))

    @app.get("/api/slides/{sid}/layers/{lid}.png")
    def layer_png(sid: str, lid: str, cmap: str = Query("viridis")):
        from eosin.viewer._layers import render_layer

        entry = state.entry(sid)
        layer = state.layer(entry, lid)
        if layer.type == "vector":
            raise _NotFound(f"layer {lid!r} is a vector layer: ask for {lid}.geojson.")
        data = state.cache.get_or_make(
            (sid, "layer", lid, cmap, hash(_stores_stamp(entry.stores))),
            lambda: render_layer(entry.stores, layer, cmap=cmap),
        )
        return Response(data, media_type="image/png")

    @app.get("/api/slides/{sid}/layers/{lid}.geojson")
    def layer_geojson(sid: str, lid: str):
        from eosin.viewer._layers import vector_layer

        entry = state.entry(sid)
        layer = state.layer(entry, lid)
        if layer.type != "vector":
            raise _NotFound(f"layer {lid!r} is a raster layer: ask for {lid}.png.")

        def make() -> bytes:
            return json.dumps(vector_layer(entry.stores, layer), separators=(",", ":")).encode()

        return Response(
            state.cache.get_or_make((sid, "vector", lid, hash(_stores_stamp(entry.stores))), make),
            media_type="application/geo+json",
        )

    @app.get("/api/slides/{sid}/layers/{lid}/value")
    def layer_value(sid: str, lid: str, x: float, y: float):
        from eosin.viewer._layers import tile_values

        entry = state.entry(sid)
        layer = state.layer(entry, lid)
        if layer.type not in ("tiles", "categorical") or layer.group.startswith("tissue/"):
            raise _NotFound(f"layer {lid!r} has no per-tile values.")
        found = tile_values(entry.stores, layer, x, y)
        if found is None:
            return JSONResponse({"error": f"no tile of {layer.group} at x={x:.0f}, y={y:.0f}."}, 404)
        return found

    @app.get("/api/slides/{sid}/annotations")
    def annotation_list(sid: str):
        state.entry(sid)
        return _annotation_files(catalog, sid)

    @app.get("/api/slides/{sid}/annotations/{name}")
    def annotation_get(sid: str, name: str):
        state.entry(sid)
        path = _annotation_path(catalog, sid, name)
        if not path.is_file():
            raise _NotFound(f"no annotation file {name!r} for this slide yet.")
        from eosin.io import load_geojson

        return {"type": "FeatureCollection", "features": load_geojson(path)}

    @app.put("/api/slides/{sid}/annotations/{name}")
    async def annotation_put(sid: str, name: str, request: Request):
        state.entry(sid)
        body = (await request.body()).decode("utf-8", errors="replace")
        return _save(catalog, sid, name, body)

    @app.post("/api/slides/{sid}/import")
    async def annotation_import(sid: str, request: Request, name: str = Query(...)):
        state.entry(sid)
        body = (await request.body()).decode("utf-8", errors="replace")
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).stem).strip("-.") or "imported"
        return _save(catalog, sid, f"imported-{stem}.geojson", body, source=name)

    return app


def _make_tile(state: _State, sid: str, z: int, col: int, row: int, fmt: str) -> bytes:
    entry = state.entry(sid)
    dz = state.zoom(entry)
    try:
        dz.tile_region(z, col, row)
    except UsageError as exc:
        raise _NotFound(str(exc)) from None
    with entry.open() as slide:
        pixels = dz.read_tile(slide, z, col, row)
    return encode_image(pixels, fmt, quality=state.quality)


def _save(catalog: Catalog, sid: str, name: str, body: str, *, source: str | None = None) -> dict[str, Any]:
    """Check a GeoJSON text and write it atomically as an annotation file of ``sid``."""
    from eosin.io import parse_geojson, write_geojson

    path = _annotation_path(catalog, sid, name)
    features = parse_geojson(body, source=source or name)
    try:
        write_geojson(path, features)
    except OSError as exc:
        raise EosinError(
            f"cannot write the annotations ({exc.strerror or exc}).",
            path=path,
            fix="start eosin view with --out pointing to a folder you can write to",
        ) from None
    return {"saved": str(path), "name": path.name, "n_features": len(features), "features": features}


def _annotation_path(catalog: Catalog, sid: str, name: str) -> Path:
    if not _FILE.match(name):
        raise UsageError(
            f"refused annotation file name {name!r}: use letters, digits, ._- and end in .geojson."
        )
    return safe_path(catalog.out_dir(sid), name)


def _annotation_files(catalog: Catalog, sid: str) -> list[str]:
    folder = catalog.out_dir(sid)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.glob("*.geojson") if _FILE.match(p.name) and not p.is_symlink())


# ---------------------------------------------------------------------- cohort
def _summary(state: _State, entry: SlideEntry) -> dict[str, Any]:
    record = entry.record
    layers = state.layers(entry)
    return {
        "id": entry.id,
        "name": entry.name,
        "path": str(entry.slide_path) if entry.slide_path else None,
        "readable": entry.readable,
        "width": record.get("width"),
        "height": record.get("height"),
        "mpp": [record.get("mpp_x"), record.get("mpp_y")],
        "format": record.get("format"),
        "problems": record.get("problems", []),
        "stores": [str(s) for s in entry.stores],
        "qc": _qc_summary(entry),
        "layers": [layer.public() for layer in layers],
    }


def _qc_summary(entry: SlideEntry) -> list[dict[str, Any]]:
    import numpy as np

    from eosin.io import SlideStore

    out = []
    for path in entry.stores:
        try:
            store = SlideStore.open(path)
            for key in store.keys("qc"):
                group = store.read_group("qc", key)
                flags = np.asarray(group["flags"])
                bits = group.attrs.get("bits", {})
                counts = {b: int(((flags & int(v)) != 0).sum()) for b, v in bits.items()}
                out.append(
                    {"grid": key, "n_tiles": int(flags.size), "clean": int((flags == 0).sum()), **counts}
                )
        except Exception:  # noqa: BLE001 - a damaged QC group must not take the cohort page down
            continue
    return out


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<link rel='stylesheet' href='/static/eosin/viewer.css'></head>"
        f"<body>{body}</body></html>"
    )


def _cohort_html(state: _State) -> str:
    rows = []
    for entry in state.catalog:
        s = _summary(state, entry)
        e = html.escape
        if s["readable"]:
            thumb = f"<a href='/slides/{e(entry.id)}'><img class='thumb' src='/api/slides/{e(entry.id)}/thumbnail.jpg' alt=''></a>"
            name = f"<a class='slide-link' href='/slides/{e(entry.id)}'>{e(entry.name)}</a>"
        else:
            thumb = "<div class='thumb none'>cannot be read</div>"
            name = f"<span class='slide-link'>{e(entry.name)}</span>"
        size = f"{s['width']} × {s['height']} px" if s["width"] else ""
        mpp = s["mpp"][0]
        res = f"{mpp:.4g} µm/px" if isinstance(mpp, (int, float)) else "mpp unknown"
        problems = "".join(
            f"<li class='problem {e(str(p.get('code')))}'><b>{e(str(p.get('code')))}</b>: {e(str(p.get('message')))}</li>"
            for p in s["problems"]
        )
        qc = "".join(
            f"<li>{q['clean']}/{q['n_tiles']} tiles clean"
            + "".join(f", {k} {v}" for k, v in q.items() if k not in ("grid", "n_tiles", "clean") and v)
            + "</li>"
            for q in s["qc"]
        )
        layers = ", ".join(sorted({e(layer["name"]) for layer in s["layers"]}))
        rows.append(
            f"<tr class='slide-row' data-id='{e(entry.id)}'><td>{thumb}</td>"
            f"<td>{name}<div class='meta'>{e(str(s['format'] or ''))} {size} · {res}</div></td>"
            f"<td><ul class='problems'>{problems or '<li class=ok>no problems</li>'}</ul></td>"
            f"<td><ul class='qc'>{qc or '<li class=none>no QC</li>'}</ul></td>"
            f"<td class='layers'>{layers or '—'}</td></tr>"
        )
    body = (
        f"<header><h1>eosin viewer</h1><span>{len(state.catalog)} slides</span></header>"
        "<table class='cohort'><thead><tr><th></th><th>slide</th><th>doctor</th><th>QC</th><th>layers</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return _page("eosin viewer: cohort", body)

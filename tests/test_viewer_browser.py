"""The viewer in a real headless Chromium (Debian's package, driven by Playwright's Python API).

Locally a missing browser or Playwright skips these tests with a message; in CI (``CI=true``) they fail instead.
``make test`` installs Chromium (``apt-get install chromium`` when root) and Playwright (the test extra).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SLIDES, require
from viewer_data import SCORE_KEY, SCORE_KIND, make_output

SID = "CMU-1-Small-Region"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = os.environ.get("EOSIN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    missing = None
    if not Path(path).exists():
        missing = f"no Chromium at {path} (Debian: apt-get install chromium; make test installs it as root)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "Playwright's Python package is absent (pip install 'eosin[test]')"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The viewer over the shared slides and a real store, on a free loopback port, in this process."""
    import uvicorn

    from eosin.viewer import Catalog, create_app
    from eosin.viewer._serve import bind

    require(SLIDES)
    out = make_output(tmp_path_factory.mktemp("browser"))
    annotations = tmp_path_factory.mktemp("annotations")
    catalog = Catalog([SLIDES, out / SID / "store.zarr"], out=annotations)
    app = create_app(catalog)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "the viewer did not start"
    yield {"url": f"http://127.0.0.1:{port}", "catalog": catalog, "out": out}
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


def _open_slide(page, server):
    page.goto(f"{server['url']}/slides/{SID}")
    page.wait_for_function("window.eosinViewer && window.eosinViewer.ready && window.eosinViewer.tilesLoaded")
    page.wait_for_load_state("networkidle")


def _map_pixels(page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#map").screenshot())).convert("RGB")).astype(
        np.int16
    )


def test_cohort_page_lists_the_shared_slides(page, server):
    page.goto(server["url"] + "/")
    rows = page.locator("tr.slide-row")
    names = page.locator("tr.slide-row .slide-link").all_inner_texts()
    from eosin.slide import SLIDE_SUFFIXES

    expected = sorted(p.name for p in SLIDES.iterdir() if p.suffix.lower() in SLIDE_SUFFIXES)
    assert sorted(names) == expected and rows.count() == len(expected)
    broken = page.locator("tr.slide-row[data-id='broken-not-a-slide']")
    assert "not a slide or image eosin can read" in broken.inner_text()
    svs = page.locator(f"tr.slide-row[data-id='{SID}']")
    assert "tissue mask" in svs.inner_text() and f"{SCORE_KIND}: proba[tumor]" in svs.inner_text()
    thumb = svs.locator("img.thumb")
    thumb.wait_for()
    page.wait_for_function(f"document.querySelector(\"tr[data-id='{SID}'] img.thumb\").naturalWidth > 0")
    assert "Traceback" not in page.content()


def test_slide_page_draws_the_slide_and_zooming_asks_for_deeper_tiles(page, server):
    _open_slide(page, server)
    pixels = _map_pixels(page)
    assert pixels.std() > 10, "the map is blank"
    assert ((pixels.sum(axis=2) < 600).mean()) > 0.05  # stained tissue, not only white glass
    first = list(page.evaluate("window.eosinViewer.tileRequests"))
    zooms = {int(u.split("/tiles/")[1].split("/")[0]) for u in first}
    page.evaluate("window.eosinViewer.tileRequests.length = 0")
    page.evaluate("window.eosinViewer.map.setZoom(window.eosinViewer.info.deepzoom.max_zoom)")
    page.wait_for_function("window.eosinViewer.tileRequests.length > 0")
    page.wait_for_load_state("networkidle")
    deeper = {
        int(u.split("/tiles/")[1].split("/")[0]) for u in page.evaluate("window.eosinViewer.tileRequests")
    }
    assert max(deeper) == 4 and max(deeper) > max(zooms)
    # the scale bar: its length on screen times the microns per screen pixel at this zoom is what it says
    label = page.locator("#scalebar").inner_text().strip()
    value, unit = label.split()
    microns = float(value) * (1000 if unit == "mm" else 1)
    width = page.evaluate("parseFloat(document.querySelector('#scalebar div').style.width)")
    per_px = page.evaluate(
        "window.eosinViewer.info.deepzoom.display_mpp * "
        "Math.pow(2, window.eosinViewer.info.deepzoom.max_zoom - window.eosinViewer.map.getZoom())"
    )
    assert per_px == pytest.approx(0.499 / 2 ** (page.evaluate("window.eosinViewer.map.getZoom()") - 4))
    assert width * per_px == pytest.approx(microns, rel=0.03)


def test_toggling_the_heatmap_changes_pixels_where_the_tissue_is(page, server):
    _open_slide(page, server)
    before = _map_pixels(page)
    lid = f"s0~{SCORE_KIND}~{SCORE_KEY}~proba~0"
    box = page.locator("#map").bounding_box()
    page.locator(f"div.layer[data-layer='{lid}'] input[type=checkbox]").check()
    page.wait_for_function(
        f"window.eosinViewer.overlays['{lid}'].leaflet && window.eosinViewer.overlays['{lid}'].leaflet._image.complete"
    )
    page.wait_for_timeout(300)
    after = _map_pixels(page)
    changed = np.abs(after - before).sum(axis=2) > 30
    # where the grid's tiles are (tissue) the heatmap shows; outside the grid's bounds nothing changes
    from eosin.io import SlideStore

    store = SlideStore.open(server["out"] / SID / "store.zarr")
    grid = store.read_group("grids", store.read_group(SCORE_KIND, SCORE_KEY).attrs["grid"])
    coords = np.asarray(grid["coords"])
    extent = grid.attrs["extent"]
    centres = page.evaluate(
        "(pts) => pts.map(p => { const c = window.eosinViewer.map.latLngToContainerPoint([p[1], p[0]]); return [c.x, c.y]; })",
        (coords + extent / 2).tolist(),
    )
    scale = before.shape[1] / box["width"]
    inside = [
        changed[int(cy * scale), int(cx * scale)]
        for cx, cy in centres
        if 0 <= cx < box["width"] and 0 <= cy < box["height"]
    ]
    assert len(inside) > 10 and np.mean(inside) > 0.9
    left = page.evaluate(
        "(x) => window.eosinViewer.map.latLngToContainerPoint([1500, x]).x", float(coords[:, 0].min()) - 60
    )
    assert not changed[:, : max(0, int(left * scale) - 2)].any()
    # a click on a tile shows its scores from the store
    cx, cy = centres[len(centres) // 2]
    page.mouse.click(box["x"] + cx, box["y"] + cy)
    page.wait_for_function("document.getElementById('values').textContent.includes('tumor')")
    assert "stroma" in page.locator("#values").inner_text()


def test_drawing_and_saving_gives_the_geojson_qupath_reads(page, server):
    import shapely

    _open_slide(page, server)
    box = page.locator("#map").bounding_box()
    page.fill("#cls", "Tumor")
    page.click("button[data-tool='rectangle']")
    x0, y0, x1, y1 = box["x"] + 400, box["y"] + 300, box["x"] + 600, box["y"] + 450
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=3)
    page.mouse.move(x1, y1, steps=3)
    page.mouse.up()
    page.click("button[data-tool='point']")
    page.mouse.click(box["x"] + 700, box["y"] + 500)
    page.click("button[data-tool='polygon']")
    for dx, dy in [(300, 550), (380, 540), (360, 620)]:
        page.mouse.click(box["x"] + dx, box["y"] + dy)
    page.mouse.click(box["x"] + 300, box["y"] + 550)  # the first vertex closes it
    page.click("#save")
    page.wait_for_function("window.eosinViewer.saved")
    expected = page.evaluate(
        "(pts) => pts.map(p => { const l = window.eosinViewer.map.containerPointToLatLng(p); return [l.lng, l.lat]; })",
        [[400, 300], [600, 450], [700, 500]],
    )
    path = server["catalog"].out_dir(SID) / "annotations.geojson"
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 3
    rect, point, poly = doc["features"]
    for f in doc["features"]:
        assert f["type"] == "Feature" and f["properties"]["objectType"] == "annotation"
        assert f["properties"]["classification"] == {"name": "Tumor", "color": [200, 30, 30]}
    shape = shapely.from_geojson(json.dumps(rect["geometry"]))
    assert shape.geom_type == "Polygon" and shape.is_valid
    # level-0 pixels: the corners the mouse went to (one screen pixel of slack)
    tol = 2 * 2 ** (
        page.evaluate("window.eosinViewer.info.deepzoom.max_zoom - window.eosinViewer.map.getZoom()")
    )
    assert np.allclose(shape.bounds, [*expected[0], *expected[1]], atol=tol)
    assert point["geometry"]["type"] == "Point" and np.allclose(
        point["geometry"]["coordinates"], expected[2], atol=tol
    )
    assert (
        poly["geometry"]["type"] == "Polygon" and len(poly["geometry"]["coordinates"][0]) == 4
    )  # 3 vertices + the closing one
    # what QuPath reads is what eosin reads back
    from eosin.io import load_geojson

    assert load_geojson(path) == doc["features"]


def test_importing_a_qupath_export_shows_it(page, server, tmp_path):
    _open_slide(page, server)
    export = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": "b0e6f0c2-0000-4000-8000-000000000001",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[800, 900], [1400, 900], [1400, 1500], [800, 1500], [800, 900]]],
                },
                "properties": {
                    "objectType": "annotation",
                    "classification": {"name": "Stroma", "color": [0, 200, 0]},
                },
            }
        ],
    }
    src = tmp_path / "qupath-export.geojson"
    src.write_text(json.dumps(export, indent=2))
    before = _map_pixels(page)
    page.set_input_files("#import", str(src))
    page.wait_for_function("document.getElementById('status').textContent.startsWith('imported 1')")
    page.wait_for_timeout(300)
    after = _map_pixels(page)
    assert (np.abs(after - before).sum(axis=2) > 30).mean() > 0.005  # the outline and its fill are drawn
    saved = server["catalog"].out_dir(SID) / "imported-qupath-export.geojson"
    assert json.loads(saved.read_text())["features"] == export["features"]
    # a malformed file: the error names the line, nothing is saved
    bad = tmp_path / "broken.geojson"
    bad.write_text('{"type": "FeatureCollection",\n"features": [\n{"type": "Feature"}]}')
    page.set_input_files("#import", str(bad))
    page.wait_for_function("document.getElementById('status').textContent.startsWith('import failed')")
    assert "line 3" in page.locator("#status").inner_text()
    assert not (server["catalog"].out_dir(SID) / "imported-broken.geojson").exists()

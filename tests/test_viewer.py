"""The viewer's server side on real data: tiles against OpenSlide, layers against the store, safety, bad input."""

from __future__ import annotations

import io
import json
import shutil
import socket

import numpy as np
import pytest
from PIL import Image

from conftest import SLIDES, require
from viewer_data import SCORE_KEY, SCORE_KIND, SVS, make_output

fastapi = pytest.importorskip("fastapi", reason="the viewer needs fastapi (a core dependency of eosin)")
from fastapi.testclient import TestClient  # noqa: E402

from eosin.viewer import Catalog, DeepZoom, TileCache, create_app, safe_path  # noqa: E402

SID = "CMU-1-Small-Region"


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return make_output(tmp_path_factory.mktemp("viewer"))


@pytest.fixture(scope="module")
def client(out_dir, tmp_path_factory):
    catalog = Catalog([out_dir], out=tmp_path_factory.mktemp("annotations"))
    return TestClient(create_app(catalog))


def _jpeg(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


# ---------------------------------------------------------------------- tiles
def test_tiles_match_openslide_deepzoom_including_the_edges():
    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    from eosin import open_slide

    slide = open_slide(require(SVS))
    dz = DeepZoom.for_slide(slide)
    assert dz.max_zoom == 4 and dz.grid_size(4) == (9, 12) and dz.grid_size(0) == (1, 1)
    ref = DeepZoomGenerator(openslide.OpenSlide(str(SVS)), tile_size=256, overlap=0)
    top = ref.level_count - 1  # OpenSlide's full-resolution level; ours is max_zoom
    for z, col, row in [(4, 3, 4), (4, 8, 11), (2, 2, 2), (1, 1, 1), (0, 0, 0)]:
        ours = dz.read_tile(slide, z, col, row).astype(np.int16)
        theirs = np.asarray(ref.get_tile(top - (dz.max_zoom - z), (col, row)).convert("RGB")).astype(np.int16)
        h, w = theirs.shape[:2]
        assert ours.shape == (256, 256, 3)
        # the part inside the slide agrees with OpenSlide (resampling filters differ: mean error small)
        assert np.abs(ours[:h, :w] - theirs).mean() < (1.0 if z == 4 else 6.0), (z, col, row)
        # past the right / bottom edge: white, never stretched content
        assert (ours[h:] == 255).all() and (ours[:, w:] == 255).all()
        if (z, col, row) == (4, 8, 11):
            assert (h, w) == (2967 - 11 * 256, 2220 - 8 * 256)


def test_non_square_pixels_are_shown_square():
    from eosin import open_slide

    slide = open_slide(require(SVS))
    slide.mpp_x, slide.mpp_y, slide.mpp_source = 0.5, 1.0, "override"  # pixels twice as tall as wide
    dz = DeepZoom.for_slide(slide)
    assert dz.aspect == (1.0, 2.0) and dz.display_size == (2220, 2 * 2967) and dz.display_mpp == 0.5
    # a deepest-zoom tile covers 256 x 128 level-0 pixels, stretched to 256 x 256
    assert dz.tile_region(dz.max_zoom, 1, 2) == (256.0, 256.0, 256.0, 128.0)
    tile = dz.read_tile(slide, dz.max_zoom, 1, 2).astype(np.int16)
    region = slide.read_region((256, 256), (256, 128)).astype(np.int16)
    assert np.abs(tile[::2] - region).mean() < 6.0  # every other row is the region itself, interpolated
    # a circle of 100 µm is 200 px wide and 100 px tall at level 0: 200 x 200 display pixels
    assert (round(200 * dz.aspect[0]), round(100 * dz.aspect[1])) == (200, 200)


def test_tile_cache_is_lru_and_bounded_by_bytes():
    cache = TileCache(max_bytes=10)
    cache.put("a", b"xxxx")
    cache.put("b", b"yyyy")
    assert cache.get("a") == b"xxxx"  # a is now the most recent
    cache.put("c", b"zzzz")  # 12 bytes > 10: the least recent (b) goes
    assert cache.get("b") is None and cache.get("a") == b"xxxx" and cache.get("c") == b"zzzz"
    assert cache.nbytes == 8


def test_tile_endpoint_serves_jpeg_and_webp_and_caches(client):
    state = client.app.state.viewer
    r = client.get(f"/api/slides/{SID}/tiles/3/1_2.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    hits = state.cache.hits
    again = client.get(f"/api/slides/{SID}/tiles/3/1_2.jpg")
    assert again.content == r.content and state.cache.hits == hits + 1
    webp = client.get(f"/api/slides/{SID}/tiles/3/1_2.webp")
    assert webp.headers["content-type"] == "image/webp"
    a, b = _jpeg(r.content), _jpeg(webp.content)
    assert a.shape == b.shape == (256, 256, 3) and np.abs(a - b).mean() < 6
    assert client.get(f"/api/slides/{SID}/tiles/9/0_0.jpg").status_code == 404
    assert client.get(f"/api/slides/{SID}/tiles/4/99_0.jpg").status_code == 404


def test_slide_info_has_scale_and_layers(client):
    info = client.get(f"/api/slides/{SID}").json()
    assert info["deepzoom"]["display_mpp"] == pytest.approx(0.499)
    ids = {layer["id"] for layer in info["layers"]}
    kinds = {layer["group"].split("/")[0] for layer in info["layers"]}
    assert {"tissue", "grids", SCORE_KIND} <= kinds
    assert any(i.endswith("~tissue") for i in ids) and any(i.endswith("~pen") for i in ids)
    scores = [layer for layer in info["layers"] if layer["group"] == f"{SCORE_KIND}/{SCORE_KEY}"]
    # one layer per prompt and per score array, named by the prompts (text heatmaps name their columns so)
    assert [layer["name"] for layer in scores] == [
        f"{SCORE_KIND}: proba[tumor]",
        f"{SCORE_KIND}: proba[stroma]",
        f"{SCORE_KIND}: similarity[tumor]",
        f"{SCORE_KIND}: similarity[stroma]",
    ]
    assert all(layer["continuous"] and layer["legend"]["type"] == "continuous" for layer in scores)
    # probabilities are shown on 0-1; similarities (here partly negative) from their minimum to their maximum
    assert (scores[0]["legend"]["vmin"], scores[0]["legend"]["vmax"]) == (0.0, 1.0)
    assert scores[2]["legend"]["vmin"] < 0 < scores[2]["legend"]["vmax"] < 1


# ---------------------------------------------------------------------- layers
def test_tile_scores_on_click_and_heatmap_pixels_follow_the_store(client, out_dir):
    from eosin.io import SlideStore

    store = SlideStore.open(out_dir / SID / "store.zarr")
    group = store.read_group(SCORE_KIND, SCORE_KEY)
    scores = np.asarray(group["proba"])
    grid = store.read_group("grids", group.attrs["grid"])
    coords = np.asarray(grid["coords"])
    extent = grid.attrs["extent"]
    lid = f"s0~{SCORE_KIND}~{SCORE_KEY}~proba~0"
    i = len(coords) // 2
    x, y = coords[i] + extent / 2
    r = client.get(f"/api/slides/{SID}/layers/{lid}/value", params={"x": x, "y": y})
    assert r.status_code == 200
    found = r.json()
    assert found["index"] == i and found["x"] == coords[i, 0]
    assert found["values"]["proba"] == pytest.approx({"tumor": scores[i, 0], "stroma": scores[i, 1]})
    # outside every tile: 404 with a message
    r = client.get(f"/api/slides/{SID}/layers/{lid}/value", params={"x": 1, "y": 1})
    assert r.status_code == 404 and "no tile" in r.json()["error"]
    # the heatmap: one pixel per tile, coloured by the map, transparent where there is no tile
    import matplotlib

    png = np.asarray(
        Image.open(io.BytesIO(client.get(f"/api/slides/{SID}/layers/{lid}.png?cmap=magma").content))
    )
    step = grid.attrs["stride"] * grid.attrs["downsample"]
    cols = np.round((coords[:, 0] - coords[:, 0].min()) / step).astype(int)
    rows = np.round((coords[:, 1] - coords[:, 1].min()) / step).astype(int)
    expected = (np.asarray(matplotlib.colormaps["magma"](scores[i, 0])[:3]) * 255).round()
    assert np.abs(png[rows[i], cols[i], :3] - expected).max() <= 1 and png[rows[i], cols[i], 3] == 255
    covered = np.zeros(png.shape[:2], bool)
    covered[rows, cols] = True
    assert (png[~covered, 3] == 0).all()


def test_tissue_mask_layer_matches_the_stored_mask(client, out_dir):
    from eosin.io import SlideStore

    store = SlideStore.open(out_dir / SID / "store.zarr")
    (key,) = store.keys("tissue")
    mask = np.asarray(store.read_group("tissue", key)["tissue"]) != 0
    png = np.asarray(
        Image.open(io.BytesIO(client.get(f"/api/slides/{SID}/layers/s0~tissue~{key}~tissue.png").content))
    )
    assert png.shape[:2] == mask.shape and ((png[..., 3] > 0) == mask).all()


def test_missing_layer_and_unknown_slide_are_404_with_a_message(client):
    r = client.get(f"/api/slides/{SID}/layers/s0~segmentation~nope~foreground.png")
    assert r.status_code == 404 and "has no layer" in r.json()["error"]
    r = client.get("/api/slides/not-a-slide/tiles/0/0_0.jpg")
    assert r.status_code == 404 and "no slide" in r.json()["error"]
    page = client.get("/slides/not-a-slide")
    assert page.status_code == 404 and "Traceback" not in page.text and "no slide" in page.text


def test_cohort_page_lists_slides_and_says_why_one_cannot_be_read(client):
    page = client.get("/")
    assert page.status_code == 200
    assert f"/slides/{SID}" in page.text and "broken-not-a-slide.svs" in page.text
    assert "not a slide or image eosin can read" in page.text and "Traceback" not in page.text
    cohort = {s["id"]: s for s in client.get("/api/slides").json()}
    assert cohort["broken-not-a-slide"]["readable"] is False and cohort[SID]["readable"] is True
    r = client.get("/api/slides/broken-not-a-slide/tiles/0/0_0.jpg")
    assert r.status_code == 404 and "cannot be shown" in r.json()["error"]


# ---------------------------------------------------------------------- safety
def test_safe_path_refuses_escapes(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.geojson").write_text("{}")
    (root / "link.geojson").symlink_to(tmp_path / "secret.geojson")
    assert safe_path(root, "a.geojson") == root.resolve() / "a.geojson"
    for bad in [
        "../secret.geojson",
        "/etc/passwd",
        "a/../../secret.geojson",
        "link.geojson",
        "",
        "~/x",
        "a\\b",
    ]:
        with pytest.raises(Exception, match="refused"):
            safe_path(root, bad)


def test_annotation_endpoints_write_only_inside_the_output_folder(client, tmp_path):
    catalog = client.app.state.viewer.catalog
    doc = {"type": "FeatureCollection", "features": []}
    for bad in ["..%2F..%2Fescape.geojson", "%2Ftmp%2Fescape.geojson", "x.txt", ".hidden.geojson"]:
        r = client.put(f"/api/slides/{SID}/annotations/{bad}", content=json.dumps(doc))
        assert r.status_code in (400, 404), bad
    assert not (catalog.out.parent / "escape.geojson").exists()
    # a link planted in the output folder is not followed
    folder = catalog.out_dir(SID)
    folder.mkdir(parents=True, exist_ok=True)
    (tmp_path / "outside.geojson").write_text(json.dumps(doc))
    (folder / "planted.geojson").symlink_to(tmp_path / "outside.geojson")
    r = client.get(f"/api/slides/{SID}/annotations/planted.geojson")
    assert r.status_code == 400 and "refused" in r.json()["error"]
    r = client.put(f"/api/slides/{SID}/annotations/planted.geojson", content=json.dumps(doc))
    assert r.status_code == 400 and (tmp_path / "outside.geojson").read_text() == json.dumps(doc)


def test_catalog_skips_links_out_of_its_roots(tmp_path):
    require(SVS)
    root = tmp_path / "served"
    root.mkdir()
    (root / "inside.svs").symlink_to(SVS)  # a link to a file outside the root: skipped
    (root / "elsewhere").symlink_to(SLIDES, target_is_directory=True)
    shutil.copy(SVS, root / "copy.svs")  # a real file inside the root: served
    catalog = Catalog([root])
    assert [e.name for e in catalog] == ["copy.svs"]


def test_saved_annotations_are_checked_and_written_atomically(client):
    catalog = client.app.state.viewer.catalog
    feature = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]]]},
        "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}},
    }
    r = client.put(
        f"/api/slides/{SID}/annotations/annotations.geojson",
        content=json.dumps({"type": "FeatureCollection", "features": [feature]}),
    )
    assert r.status_code == 200
    path = catalog.out_dir(SID) / "annotations.geojson"
    assert json.loads(path.read_text())["features"] == [feature]
    bad = '{"type": "FeatureCollection",\n "features": [\n  {"type": "Feature", "geometry": null}\n]}'
    r = client.put(f"/api/slides/{SID}/annotations/annotations.geojson", content=bad)
    assert r.status_code == 422 and "line 3" in r.json()["error"]
    assert json.loads(path.read_text())["features"] == [feature]  # the old file is untouched
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary debris


def test_port_in_use_is_a_usage_error(capsys, out_dir):
    from eosin.cli._main import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code = main(["view", str(out_dir), "--port", str(port)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err and "Traceback" not in err


def test_segmentation_attention_and_geojson_beside_the_store(client, out_dir):
    import shapely

    from eosin.io import SlideStore

    info = client.get(f"/api/slides/{SID}").json()
    layers = {layer["name"]: layer for layer in info["layers"]}
    store = SlideStore.open(out_dir / SID / "store.zarr")
    seg = store.read_group("segmentation", "unet_test")
    foreground = np.asarray(seg["foreground"])
    # the probability map: drawn where there is foreground, transparent elsewhere
    fg = layers["segmentation foreground"]
    assert fg["type"] == "map" and fg["continuous"]
    png = np.asarray(Image.open(io.BytesIO(client.get(f"/api/slides/{SID}/layers/{fg['id']}.png").content)))
    assert png.shape[:2] == foreground.shape and ((png[..., 3] > 0) == (foreground > 0)).all()
    # contours: vectors whose area is the mask's, in level-0 pixels
    contours = client.get(f"/api/slides/{SID}/layers/{layers['segmentation contours']['id']}.geojson").json()
    area = sum(shapely.from_geojson(json.dumps(f["geometry"])).area for f in contours["features"])
    dx, dy = seg.attrs["downsample"]
    assert area == pytest.approx((foreground > 0).sum() * dx * dy, rel=0.05)
    # MIL attention, shown from 0 to its maximum; a click gives the tile's weight
    att = layers["attention: attention"]
    weights = np.asarray(store.read_group("attention", "abmil_test")["attention"])
    assert att["legend"]["vmin"] == 0 and att["legend"]["vmax"] == pytest.approx(weights.max())
    # a GeoJSON file beside the store (instances from eosin segment) is a vector layer
    beside = client.get(f"/api/slides/{SID}/layers/{layers['instances.geojson']['id']}.geojson").json()
    assert beside["features"] == json.loads((out_dir / SID / "instances.geojson").read_text())["features"]
    # asking a vector layer for pixels (or the reverse) is a 404 that says what to ask for
    r = client.get(f"/api/slides/{SID}/layers/{layers['instances.geojson']['id']}.png")
    assert r.status_code == 404 and ".geojson" in r.json()["error"]


def test_stores_of_one_slide_are_merged_and_shared_groups_listed_once(out_dir, tmp_path):
    import shutil

    from eosin.viewer import find_layers

    shutil.copytree(out_dir / SID, tmp_path / "again" / SID)
    catalog = Catalog([out_dir, tmp_path / "again"])
    entry = catalog.get(SID)
    assert len(entry.stores) == 2 and [e.id for e in catalog].count(SID) == 1
    merged = [layer.name for layer in find_layers(entry.stores) if "~file~" not in layer.id]
    single = [layer.name for layer in find_layers(entry.stores[:1]) if "~file~" not in layer.id]
    assert sorted(merged) == sorted(single)
    # files beside the stores are different files: both are listed, told apart by their folder
    files = [layer for layer in find_layers(entry.stores) if "~file~" in layer.id]
    assert len(files) == 2 and len({layer.name for layer in files}) == 2


def test_an_unwritable_output_folder_is_a_message_not_a_crash(out_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    client = TestClient(create_app(Catalog([out_dir], out=blocker / "annotations")))
    doc = {"type": "FeatureCollection", "features": []}
    r = client.put(f"/api/slides/{SID}/annotations/annotations.geojson", content=json.dumps(doc))
    assert (
        r.status_code == 422
        and "cannot write the annotations" in r.json()["error"]
        and "--out" in r.json()["error"]
    )


def test_a_store_whose_slide_is_gone_keeps_its_row_with_the_reason(tmp_path):
    from eosin.io import SlideStore

    SlideStore.create(tmp_path / "out" / "moved" / "store.zarr", slide={"path": str(tmp_path / "moved.svs")})
    SlideStore.create(tmp_path / "out" / "nameless" / "store.zarr")
    client = TestClient(create_app(Catalog([tmp_path / "out"])))
    cohort = {s["id"]: s for s in client.get("/api/slides").json()}
    assert set(cohort) == {"moved", "nameless"}
    assert not cohort["moved"]["readable"] and "moved.svs" in cohort["moved"]["problems"][0]["message"]
    assert (
        not cohort["nameless"]["readable"]
        and "records no slide" in cohort["nameless"]["problems"][0]["message"]
    )
    page = client.get("/")
    assert page.status_code == 200 and page.text.count("cannot be read") == 2 and "Traceback" not in page.text
    r = client.get("/api/slides/moved/tiles/0/0_0.jpg")
    assert r.status_code == 404 and "cannot be shown" in r.json()["error"]


def test_a_group_written_while_the_viewer_runs_shows_up(out_dir, tmp_path):
    import shutil

    from eosin.io import SlideStore

    shutil.copytree(out_dir / SID, tmp_path / SID)
    client = TestClient(create_app(Catalog([tmp_path])))
    names = lambda: {layer["name"] for layer in client.get(f"/api/slides/{SID}").json()["layers"]}  # noqa: E731
    assert "late: value" not in names()
    store = SlideStore.open(tmp_path / SID / "store.zarr")
    (grid_key,) = store.keys("grids")
    n = store.read_group("grids", grid_key)["coords"].shape[0]
    store.write_group("late", "k1", {"value": np.linspace(0, 1, n, dtype=np.float32)}, {"grid": grid_key})
    assert "late: value" in names()

"""Masks to QuPath GeoJSON and back: pixel-edge geometry in level-0 coordinates."""

from __future__ import annotations

import json

import numpy as np
import shapely
from skimage.draw import disk

from eosin.io import features_from_masks, mask_to_polygons, read_geojson, write_geojson


def test_square_with_hole_follows_pixel_edges():
    mask = np.zeros((10, 10), bool)
    mask[2:8, 2:8] = True
    mask[4:6, 4:6] = False
    multi = mask_to_polygons(mask)
    assert len(multi.geoms) == 1
    polygon = multi.geoms[0]
    assert polygon.area == 32 and polygon.bounds == (2, 2, 8, 8)
    assert shapely.Polygon(polygon.interiors[0]).bounds == (4, 4, 6, 6)


def test_downsample_and_origin_map_to_level0():
    mask = np.zeros((5, 6), bool)
    mask[2, 3] = True  # one pixel: columns 3..4, rows 2..3 of the mask
    multi = mask_to_polygons(mask, downsample=(4, 8), origin=(100, 50))
    assert multi.bounds == (100 + 12, 50 + 16, 100 + 16, 50 + 24)


def test_disk_with_island_in_hole():
    mask = np.zeros((200, 200), bool)
    mask[disk((100, 100), 80)] = True
    mask[disk((100, 100), 40)] = False
    mask[disk((100, 100), 10)] = True
    multi = mask_to_polygons(mask)
    assert sorted(len(p.interiors) for p in multi.geoms) == [0, 1]
    assert abs(multi.area - mask.sum()) / mask.sum() < 0.03
    # rasterising the polygons back gives the mask except along diagonal boundary steps
    from skimage.draw import polygon as fill

    back = np.zeros_like(mask)
    for p in multi.geoms:
        rr, cc = fill(
            np.asarray(p.exterior.coords)[:, 1] - 0.5, np.asarray(p.exterior.coords)[:, 0] - 0.5, mask.shape
        )
        back[rr, cc] = True
        for ring in p.interiors:
            rr, cc = fill(
                np.asarray(ring.coords)[:, 1] - 0.5, np.asarray(ring.coords)[:, 0] - 0.5, mask.shape
            )
            back[rr, cc] = False
    assert (back != mask).sum() / mask.sum() < 0.03


def test_empty_mask_gives_no_features(tmp_path):
    features = features_from_masks({"Tissue": (np.zeros((8, 8), bool), (0, 170, 0))})
    assert features == []
    write_geojson(tmp_path / "e.geojson", features)
    assert json.loads((tmp_path / "e.geojson").read_text()) == {"type": "FeatureCollection", "features": []}


def test_qupath_feature_collection_round_trip(tmp_path):
    tissue = np.zeros((20, 30), bool)
    tissue[2:10, 3:12] = True
    tissue[12:18, 20:28] = True
    pen = np.zeros_like(tissue)
    pen[0:2, 0:5] = True
    features = features_from_masks(
        {"Tissue": (tissue, (0, 170, 0)), "Pen": (pen, (0, 90, 255))}, downsample=32, origin=(0, 0)
    )
    path = tmp_path / "t.geojson"
    write_geojson(path, features)
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 3
    for feature in doc["features"]:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        assert feature["properties"]["objectType"] == "annotation"
        assert set(feature["properties"]["classification"]) == {"name", "color"}
    back = read_geojson(path)
    names = sorted(name for name, _ in back)
    assert names == ["Pen", "Tissue", "Tissue"]
    tissue_area = sum(g.area for name, g in back if name == "Tissue")
    assert tissue_area == tissue.sum() * 32 * 32

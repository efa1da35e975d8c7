"""Olympus VSI is refused with how to convert it (not read as its overview), and the doctor reports readers that
disagree about a file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from conftest import SLIDES, require
from eosin.errors import UnsupportedFormatError
from eosin.slide import diagnose, open_slide


def _vsi(folder, *, with_stack=True):
    """A VSI as a scanner writes it: a small TIFF container (the overview) and _<name>_/stack1/frame_t.ets."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(0).integers(0, 255, (512, 501, 3), dtype=np.uint8)
    tifffile.imwrite(folder / "scan.vsi", rgb, photometric="rgb")
    if with_stack:
        (folder / "_scan_" / "stack1").mkdir(parents=True)
        (folder / "_scan_" / "stack1" / "frame_t.ets").write_bytes(b"SIS\x00" + bytes(60))
    return folder / "scan.vsi"


def test_vsi_is_refused_with_what_it_is_and_how_to_convert(tmp_path):
    vsi = _vsi(tmp_path / "a")
    for backend in (
        None,
        "tiffslide",
        "image",
    ):  # no reader, even a forced one, shows the overview as the slide
        with pytest.raises(UnsupportedFormatError) as info:
            open_slide(vsi, backend=backend)
        text = str(info.value)
        assert "scan.vsi" in text and "Olympus" in text and "_scan_/ (stack1/frame_t.ets)" in text
        assert "bfconvert" in text and "scan.ome.tiff" in text and "QuPath" in text
    with pytest.raises(UnsupportedFormatError, match="missing here"):
        open_slide(_vsi(tmp_path / "b", with_stack=False))
    with pytest.raises(UnsupportedFormatError, match=r"\.ets.*scan\.vsi"):
        open_slide(tmp_path / "a" / "_scan_" / "stack1" / "frame_t.ets")


def test_vsi_in_a_folder_fails_its_slide_with_one_line(tmp_path, capsys):
    from eosin.cli._main import main

    _vsi(tmp_path / "in")
    assert main(["tile", str(tmp_path / "in"), "--mpp", "1", "--out", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "scan.vsi: an Olympus/Evident VSI slide" in err and "Traceback" not in err
    assert main(["info", str(tmp_path / "in" / "scan.vsi"), "--json"]) == 1
    (record,) = json.loads(capsys.readouterr().out)
    assert record["problems"][0]["code"] == "unreadable" and record["width"] is None


def test_two_readers_that_agree_on_a_real_slide():
    svs = require(SLIDES / "CMU-1-Small-Region.svs")
    for backend in ("openslide", "tiffslide"):
        record = diagnose(svs, backend=backend, compare_readers=True)
        assert record["problems"] == [], record["problems"]


def test_two_readers_that_disagree_are_reported(tmp_path):
    # a pyramid whose middle level is stored in strips: OpenSlide skips such a level, tiffslide lists it
    path = tmp_path / "mixed.tif"
    rgb = np.random.default_rng(1).integers(0, 255, (1024, 1024, 3), dtype=np.uint8)
    with tifffile.TiffWriter(path) as tif:
        tif.write(rgb, tile=(256, 256), photometric="rgb", resolution=(20000, 20000), resolutionunit=3)
        tif.write(
            rgb[::2, ::2], photometric="rgb", subfiletype=1, resolution=(10000, 10000), resolutionunit=3
        )
        tif.write(
            rgb[::4, ::4],
            tile=(256, 256),
            photometric="rgb",
            subfiletype=1,
            resolution=(5000, 5000),
            resolutionunit=3,
        )
    assert (
        len(open_slide(path, backend="openslide").levels) == 2
        and len(open_slide(path, backend="tiffslide").levels) == 3
    )
    record = diagnose(path, probe_pixels=True)
    (problem,) = [p for p in record["problems"] if p["code"] == "reader-disagreement"]
    assert "(levels)" in problem["message"] and "512x512" in problem["message"]
    assert problem["readers"]["openslide"]["levels"] == [[1024, 1024], [256, 256]]
    assert diagnose(path)["problems"] == []  # the stages' quick record does not open a second reader

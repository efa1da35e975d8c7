"""eosin evaluate robustness: perturbations, metric drop and flip rates against an independent computation, CIs, and
the command end to end with a classifier trained on real tiles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import DATA, require

CRC = DATA / "tiles" / "crc-val-he-7k"
STAIN = DATA / "stain"


@pytest.fixture(scope="module")
def crc():
    from eosin.data import load_tile_table, read_tile

    table = load_tile_table(require(CRC))
    return np.stack([read_tile(p) for p in table.paths]), np.asarray(table.labels)


def _colour_model(classes):
    """A 'classifier' of the tiles by their mean colour: class = index of the nearest of fixed RGB centres. It is
    sensitive to stain and blind to texture, and cheap: the protocol is tested, not a network."""
    centres = np.random.default_rng(0).uniform(80, 220, size=(len(classes), 3))

    def predict(images):
        mean = images.reshape(len(images), -1, 3).mean(1)
        d = ((mean[:, None, :] - centres[None]) ** 2).sum(-1)
        p = np.exp(-(d - d.min(1, keepdims=True)) / 50.0)
        return p / p.sum(1, keepdims=True)

    return predict


def test_drop_and_flips_match_an_independent_computation(crc):
    from sklearn.metrics import balanced_accuracy_score

    from eosin.evaluate import evaluate_robustness, perturb

    images, labels = crc
    classes = sorted(set(labels))
    model = _colour_model(classes)
    report = evaluate_robustness(
        model,
        images,
        labels,
        classes=classes,
        hed=(0.02, 0.3),
        jpeg=(20,),
        blur=(3.0,),
        normalizers=(),
        n_bootstrap=200,
        seed=3,
    )
    y = np.searchsorted(classes, labels)
    clean = model(images).argmax(1)
    assert report["pipelines"]["none"]["value"] == pytest.approx(balanced_accuracy_score(y, clean))
    by = {(c["perturbation"], c["strength"]): c for c in report["conditions"]}
    assert set(by) == {("hed", 0.02), ("hed", 0.3), ("jpeg", 20), ("blur", 3.0)}
    for (family, strength), row in by.items():
        pred = model(perturb(images, family, strength, seed=3)).argmax(1)
        value = balanced_accuracy_score(y, pred)
        assert row["value"] == pytest.approx(value)
        assert row["drop"] == pytest.approx(balanced_accuracy_score(y, clean) - value)
        assert row["flip_rate"] == pytest.approx(np.mean(pred != clean))
        for key in ("ci", "drop_ci", "flip_rate_ci"):
            lo, hi = row[key]
            assert lo <= hi
        assert row["flip_rate_ci"][0] <= row["flip_rate"] <= row["flip_rate_ci"][1]
    # a colour model is moved more by strong stain jitter than by weak
    assert by[("hed", 0.3)]["flip_rate"] > by[("hed", 0.02)]["flip_rate"]


def test_a_model_blind_to_the_image_never_flips(crc):
    from eosin.evaluate import evaluate_robustness

    images, labels = crc
    classes = sorted(set(labels))

    def constant(x):
        return np.tile(np.eye(len(classes))[0], (len(x), 1))

    report = evaluate_robustness(
        constant,
        images,
        labels,
        classes=classes,
        hed=(0.2,),
        jpeg=(10,),
        blur=(4.0,),
        targets=[require(STAIN / "histoqc-template1.png")],
        transfer_methods=("reinhard",),
        normalizers=("reinhard",),
        n_bootstrap=100,
    )
    assert set(report["pipelines"]) == {"none", "reinhard"}
    assert len(report["conditions"]) == 2 * 4  # two pipelines x (hed, stain, jpeg, blur)
    for row in report["conditions"]:
        assert row["flip_rate"] == 0 and row["drop"] == 0 and row["flip_rate_ci"] == [0.0, 0.0]


def test_perturbations_do_what_they_say(crc):
    import cv2

    from eosin.evaluate import perturb
    from eosin.stain import get_normalizer

    images = crc[0][:4]
    assert np.array_equal(perturb(images, "blur", 2.0)[0], cv2.GaussianBlur(images[0], (0, 0), 2.0))
    light, heavy = perturb(images, "jpeg", 95), perturb(images, "jpeg", 10)
    err = lambda x: np.abs(x.astype(float) - images).mean()  # noqa: E731
    assert err(light) < err(heavy)
    target = cv2.imread(str(require(STAIN / "histoqc-template2.png")))[..., ::-1]
    moved = perturb(images, "stain", "macenko", target=target)
    np.testing.assert_array_equal(moved, get_normalizer("macenko").fit(target).transform(images))
    with pytest.raises(Exception, match="unknown perturbation"):
        perturb(images, "rotate", 1)


@pytest.mark.torch
def test_robustness_command_on_a_trained_classifier(tmp_path, capsys):
    from PIL import Image

    from eosin.cli._main import main

    ckpt = tmp_path / "ckpt"
    args = [
        "train",
        "tiles",
        str(require(CRC)),
        "--encoder",
        "efficientnet_lite0",
        "--probe",
        "knn",
        "--k",
        "1",
    ]
    assert (
        main([*args, "--input-size", "32", "--val-fraction", "0", "--workers", "0", "--out", str(ckpt), "-q"])
        == 0
    )
    out = tmp_path / "rob"
    args = [
        "evaluate",
        "robustness",
        str(CRC),
        "--model",
        str(ckpt),
        "--targets",
        str(STAIN / "histoqc-template1.png"),
    ]
    args += [
        "--hed",
        "0.1",
        "--jpeg",
        "30",
        "--blur",
        "2",
        "--transfer",
        "reinhard",
        "--normalizers",
        "reinhard",
    ]
    assert main([*args, "--n-bootstrap", "50", "--max-tiles", "16", "--out", str(out), "-q"]) == 0
    report = json.loads((out / "robustness.json").read_text())
    assert report["n_tiles"] == 16 and report["model"]["encoder"] == "efficientnet_lite0"
    assert report["model"]["encoder_weights"]["pretrained"] is True
    assert {(c["pipeline"], c["perturbation"]) for c in report["conditions"]} == {
        (p, f) for p in ("none", "reinhard") for f in ("hed", "stain", "jpeg", "blur")
    }
    with Image.open(out / "robustness.png") as picture:
        assert picture.size[0] > 800
    assert "clean" in capsys.readouterr().out
    assert (
        main(["evaluate", "robustness", str(CRC), "--model", str(ckpt), "--out", str(out), "--hed", "x"]) == 2
    )

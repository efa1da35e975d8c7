"""eosin.train and the train/predict commands: probes equal scikit-learn, checkpoints round-trip, predictions
land in the store aligned with the grid and the CSV goes through eosin evaluate."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from conftest import DATA, SLIDES, require

pytestmark = pytest.mark.torch

CRC = DATA / "tiles" / "crc-val-he-7k"
CAMELYON = DATA / "segmentation" / "camelyon"


@pytest.fixture(scope="module")
def camelyon_tiles():
    from eosin.data import tiles_from_masks

    images = sorted((require(CAMELYON) / "images").glob("*.jpg"))[:8]
    return tiles_from_masks(
        images, [CAMELYON / "masks" / p.name for p in images], tile_size=128, hi=0.5, lo=0.05
    )


def test_balanced_loader_draws_classes_equally(camelyon_tiles):
    from eosin.data import make_loader

    counts = camelyon_tiles.counts()
    assert counts["tumour"] > 1.5 * counts["normal"]
    for balance in ("weighted", "oversample"):
        loader = make_loader(camelyon_tiles, size=32, batch_size=64, balance=balance, workers=0, seed=1)
        labels = torch.cat([y for _, y in loader]).numpy()
        share = labels.mean()
        assert 0.4 < share < 0.6, (balance, share)
    images, _ = next(iter(make_loader(camelyon_tiles, size=32, batch_size=4, workers=0)))
    assert images.shape == (4, 32, 32, 3) and images.dtype == torch.uint8


def test_probe_heads_compute_what_scikit_learn_predicts():
    from eosin.train import fit_probe, probe_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)) * [1, 2, 3, 4, 5] + 3
    for n_classes in (2, 3):
        y = np.array(["a", "b", "c"][:n_classes])[rng.integers(0, n_classes, 60)]
        for kind in ("linear", "knn"):
            pipe = fit_probe(x, y, kind=kind, k=5)
            head = probe_head(pipe, x).double()
            test = rng.normal(size=(20, 5)) * [1, 2, 3, 4, 5] + 3
            with torch.no_grad():
                got = head.proba(torch.from_numpy(test)).numpy()
            np.testing.assert_allclose(got, pipe.predict_proba(test), atol=1e-6)


def test_bf16_training_follows_fp32(camelyon_tiles):
    """bf16 autocast (``precision="auto"`` on CPUs with native bfloat16) trains like float32: same losses step
    by step within rounding, and the precision is recorded in the checkpoint's training parameters."""
    from eosin.train import fit_tiles

    runs = {}
    for precision in ("fp32", "bf16"):
        model, history = fit_tiles(
            camelyon_tiles,
            encoder="resnet18",
            input_size=64,
            epochs=3,
            batch_size=16,
            max_steps=3,
            balance="none",
            augment=False,
            workers=0,
            device="cpu",
            precision=precision,
        )
        assert model.meta["training"]["precision"] == precision
        runs[precision] = (history[0]["train_loss"], next(model.head.parameters()).detach().clone())
    (loss32, head32), (loss16, head16) = runs["fp32"], runs["bf16"]
    assert loss16 == pytest.approx(loss32, rel=0.02)
    cosine = torch.nn.functional.cosine_similarity(head32.flatten(), head16.flatten(), dim=0)
    assert cosine > 0.99


def test_auto_training_precision_is_measured_once_per_machine(camelyon_tiles, tmp_path, monkeypatch):
    """``auto`` trains in the precision a calibration on real tiles chose; the next run reuses the decision."""
    from eosin._device import precision_candidates
    from eosin.train import fit_tiles

    monkeypatch.setenv("EOSIN_HOME", str(tmp_path / "home"))
    kw = dict(encoder="resnet18", input_size=64, epochs=1, batch_size=8, max_steps=1, balance="none")
    threads = torch.get_num_threads()
    model, _ = fit_tiles(camelyon_tiles, augment=True, workers=None, device="cpu", **kw)
    cal = model.meta["calibration"]
    names = {f"torch-{p}" for p in precision_candidates(torch.device("cpu"))}
    assert cal["choice"] == f"torch-{model.meta['training']['precision']}" and cal["choice"] in names
    assert not cal["cached"] and cal["measured"]  # one candidate is timed too: the step sizes the loader
    plan = model.meta["loader"]
    from eosin.data import choose_loader_workers

    assert plan["how"] == "measured" and plan["input_ms_per_tile"] > 0 and plan["step_ms_per_tile"] > 0
    assert (plan["workers"], plan["torch_threads"]) == choose_loader_workers(
        plan["input_ms_per_tile"], plan["step_ms_per_tile"]
    )
    assert torch.get_num_threads() == threads  # restored after training
    if len(names) > 1:
        timed = {k: v for k, v in cal["ms_per_item"].items() if v is not None}
        assert set(cal["ms_per_item"]) == names and timed[cal["choice"]] <= min(timed.values()) / 0.97
        again, _ = fit_tiles(camelyon_tiles, augment=False, workers=0, device="cpu", seed=1, **kw)
        assert again.meta["calibration"]["cached"] and again.meta["calibration"]["choice"] == cal["choice"]


def test_checkpoint_round_trip_gives_identical_predictions(camelyon_tiles, tmp_path):
    from eosin.data import patient_split
    from eosin.train import fit_probe_tiles, fit_tiles, load_classifier, predict_tiles, save_classifier

    tr, va = patient_split(camelyon_tiles.labels, camelyon_tiles.patients, test_size=0.25)
    train, val = camelyon_tiles.subset(tr), camelyon_tiles.subset(va)
    model, history = fit_tiles(
        train,
        val,
        encoder="resnet18",
        input_size=32,
        epochs=2,
        batch_size=8,
        max_steps=2,
        workers=0,
        device="cpu",
        mpp=0.5,
    )
    assert history[-1]["tiles"] == 16 and 0 <= history[-1]["val_balanced_accuracy"] <= 1
    knn = fit_probe_tiles(train, encoder="resnet18", input_size=32, kind="knn", k=3, workers=0, device="cpu")
    for m, name in ((model, "ft"), (knn, "knn")):
        save_classifier(m, tmp_path / name)
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["encoder"] == "resnet18" and config["classes"] == ["normal", "tumour"]
        assert config["preprocess"]["input_size"] == 32
        again = load_classifier(tmp_path / name)
        p1, p2 = predict_tiles(m, val, workers=0), predict_tiles(again, val, workers=0)
        assert p1.shape == (len(val), 2)
        np.testing.assert_array_equal(p1, p2)
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["mpp"] == 0.5


def test_train_and_predict_commands(tmp_path):
    from eosin.cli._main import main
    from eosin.io import SlideStore
    from eosin.tiles import TileGrid

    ckpt = tmp_path / "ckpt"
    args = [
        "train",
        "tiles",
        str(require(CRC)),
        "--encoder",
        "resnet18",
        "--weights",
        "none",
        "--out",
        str(ckpt),
    ]
    assert (
        main([*args, "--probe", "linear", "--input-size", "32", "--workers", "0", "--val-fraction", "0.25"])
        == 0
    )
    config = json.loads((ckpt / "config.json").read_text())  # what was actually used, resolved
    assert config["training"]["device"] == "cpu" and config["versions"]["eosin"]
    assert config["initial_weights"] == {
        "file": None,
        "sha256": None,
        "seed": 0,
        "pretrained": False,
        "source": "random",
    }
    assert main(["train", "tiles", str(CRC), "--encoder", "resnet1", "--out", str(ckpt)]) == 2
    out = tmp_path / "tiled"
    svs = require(SLIDES / "CMU-1-Small-Region.svs")
    assert main(["tile", str(svs), "--mpp", "2", "--size", "64", "--out", str(out), "-q"]) == 0
    labels = tmp_path / "labels.csv"
    labels.write_text("slide_id,label\nCMU-1-Small-Region,TUM\n")
    assert (
        main(
            ["predict", str(out / svs.stem), "--model", str(ckpt), "--labels", str(labels), "--workers", "0"]
        )
        == 0
    )
    store = SlideStore.open(out / svs.stem / "store.zarr")
    (key,) = store.keys("predictions")
    group = store.read_group("predictions", key)
    grid_group = store.read_group("grids", group.attrs["grid"])
    grid = TileGrid.from_group(grid_group, grid_group.attrs)
    proba = np.asarray(group["proba"])
    assert proba.shape == (len(grid), 8)
    from eosin._device import precision_candidates

    assert group.attrs["precision"] in precision_candidates(torch.device("cpu"))  # what auto measured fastest
    assert group.attrs["device"] == "cpu" and group.attrs["versions"]["torch"] == torch.__version__
    np.testing.assert_array_equal(np.asarray(group["coords"]), grid.coords)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    rows = list(csv.DictReader((out / svs.stem / "predictions.csv").read_text().splitlines()))
    assert len(rows) == len(grid)
    assert [[int(r["x"]), int(r["y"])] for r in rows] == grid.coords.tolist()
    assert all(
        r["pred"] == group.attrs["classes"][int(np.argmax(p))] for r, p in zip(rows, proba, strict=True)
    )
    assert (out / svs.stem / "heatmap_TUM.png").is_file()
    assert main(["evaluate", "classification", str(out / svs.stem / "predictions.csv"), "--json"]) == 0


def test_predictions_key_follows_the_weights_of_a_retrained_checkpoint(tmp_path):
    """``eosin predict`` names its group after the checkpoint's weights: retraining into the same folder (same
    name, same config) gives another key, so old predictions are never taken for the new model's."""
    from eosin.models import create_encoder
    from eosin.train import checkpoint_key, save_classifier
    from eosin.train._model import LinearHead, TileClassifier

    model = TileClassifier(
        create_encoder("resnet18", weights=None), LinearHead(512, 2), ["a", "b"], {"mpp": 0.5}
    )
    save_classifier(model, tmp_path / "ckpt")
    first = checkpoint_key(tmp_path / "ckpt")
    assert checkpoint_key(tmp_path / "ckpt") == first
    with torch.no_grad():
        model.head.fc.bias.add_(0.1)
    save_classifier(model, tmp_path / "ckpt")
    assert checkpoint_key(tmp_path / "ckpt") != first and checkpoint_key(tmp_path / "ckpt").startswith(
        "ckpt-"
    )

"""``eosin train mil`` end to end on a small cohort of real-tile "slides": tile, embed, train, evaluate, attention.

How the cohort is made: nine mosaic PNG "slides" of 2 x 2 real H&E tiles (224 px, CRC-VAL-HE-7K and NCT-CRC-HE-100K,
read at --slide-mpp 0.5), one patient each. Negative slides hold only non-tumour tissue tiles (DEB, LYM, MUC, MUS,
NORM, STR); positive slides put one TUM tile among three non-tumour ones. Stores are made by ``eosin tile`` and
features by ``eosin embed --encoder resnet18 --weights none`` (random weights: this tests the plumbing, not
accuracy; docs/results.md has the real-data numbers). The ninth slide is tiled but never embedded.
"""

from __future__ import annotations

import csv
import io
import json
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
from PIL import Image

from conftest import DATA, require
from eosin.cli._main import main

pytestmark = pytest.mark.torch

TILES = DATA / "tiles"
TISSUE = ("DEB", "LYM", "MUC", "MUS", "NORM", "STR")


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _tiles() -> dict[str, list[np.ndarray]]:
    root = require(TILES)
    paths = sorted((root / "crc-val-he-7k").glob("*.png")) + sorted((root / "nct-crc-he-100k").glob("*.tif"))
    out: dict[str, list[np.ndarray]] = {}
    for p in paths:
        label = p.name.split("-")[0]
        image = np.asarray(Image.open(p).convert("RGB").resize((224, 224)))
        out.setdefault(label, []).append(image)
    return out


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Nine mosaic slides tiled into ``stores/``, eight embedded; the cohort CSV rows (path, slide, patient, label)."""
    tiles = _tiles()
    other = [t for c in TISSUE for t in tiles[c]]
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("mil")
    slides, rows = root / "slides", []
    slides.mkdir()
    for i in range(9):
        positive = i % 2 == 1
        picks = [other[j] for j in rng.choice(len(other), 3 if positive else 4, replace=False)]
        if positive:
            picks.insert(int(rng.integers(4)), tiles["TUM"][i // 2])
        mosaic = np.concatenate([np.concatenate(picks[r * 2 : r * 2 + 2], axis=1) for r in range(2)], axis=0)
        path = slides / f"slide{i}.png"
        Image.fromarray(mosaic).save(path)
        rows.append((str(path), f"s{i}", f"p{i}", "tumour" if positive else "normal"))
    stores = root / "stores"
    code, _, err = _run(
        ["tile", str(slides), "--out", str(stores), "--mpp", "0.5", "--size", "224", "--slide-mpp", "0.5"]
        + ["--min-tissue", "0.05", "--workers", "0", "-q"]
    )
    assert code == 0, err
    embedded = [str(stores / f"slide{i}" / "store.zarr") for i in range(8)]
    code, _, err = _run(
        ["embed", *embedded, "--encoder", "resnet18", "--weights", "none", "--device", "cpu"]
        + ["--runtime", "torch", "--workers", "0", "--batch-size", "16", "-q"]
    )
    assert code == 0, err
    return {"root": root, "stores": stores, "rows": rows}


def _write_cohort(path, rows, split=None) -> str:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "slide_id", "patient_id", "label"] + (["split"] if split else []))
        for k, row in enumerate(rows):
            w.writerow(list(row) + ([split[k]] if split else []))
    return str(path)


@pytest.fixture(scope="module")
def trained(cohort):
    """ABMIL trained through the CLI on the eight embedded slides (split column: six train, two test)."""
    root = cohort["root"]
    split = ["train"] * 6 + ["test"] * 2
    csv_path = _write_cohort(root / "cohort.csv", cohort["rows"][:8], split)
    out = root / "run"
    code, stdout, err = _run(
        [
            "train",
            "mil",
            csv_path,
            "--features",
            "resnet18",
            "--out",
            str(out),
            "--stores",
            str(cohort["stores"]),
        ]
        + ["--model", "abmil", "--epochs", "3", "--hidden", "32", "--device", "cpu", "-q"]
    )
    assert code == 0, err
    return {"out": out, "summary": json.loads(stdout.strip().splitlines()[-1]), **cohort}


def test_predictions_csv_is_read_by_eosin_evaluate(trained):
    out = trained["out"]
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ["s6", "s7"]  # exactly the held-out patients
    assert [r["label"] for r in rows] == ["normal", "tumour"]
    for r in rows:
        assert abs(float(r["p_normal"]) + float(r["p_tumour"]) - 1) < 1e-5
        assert r["pred"] == max(("normal", "tumour"), key=lambda c: float(r[f"p_{c}"]))
    code, stdout, err = _run(["evaluate", "classification", str(out / "predictions.csv"), "--json"])
    assert code == 0, err
    evaluated = json.loads(stdout)
    saved = json.loads((out / "metrics.json").read_text())
    assert evaluated["accuracy"]["value"] == saved["metrics"]["accuracy"]["value"]
    assert trained["summary"]["n_train"] == [6] and trained["summary"]["n_test"] == 2


def test_model_folder_reloads_to_the_same_predictions(trained):
    from eosin.aggregate import load_aggregator
    from eosin.io import SlideStore

    agg = load_aggregator(trained["out"] / "model")
    store = SlideStore.open(trained["stores"] / "slide7" / "store.zarr")
    key = next(k for k in store.keys("features") if k.startswith("resnet18--"))
    bag = np.asarray(store.read_group("features", key)["features"][...], dtype=np.float32)
    with open(trained["out"] / "predictions.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["id"] == "s7")
    assert agg.predict_proba([bag])[0, 1] == pytest.approx(float(row["p_tumour"]), abs=1e-5)


def test_attention_is_written_aligned_with_the_grid_and_drawn(trained):
    from eosin.io import SlideStore

    key = trained["summary"]["key"]
    for i in range(8):
        store = SlideStore.open(trained["stores"] / f"slide{i}" / "store.zarr")
        group = store.read_group("attention", key)
        grid = store.read_group("grids", group.attrs["grid"])
        attention = np.asarray(group["attention"][...])
        assert attention.shape == (grid.attrs["n_tiles"],) and 1 <= grid.attrs["n_tiles"] <= 4
        assert np.array_equal(group["coords"][...], grid["coords"][...])
        assert attention.sum() == pytest.approx(1.0, abs=1e-4) and (attention >= 0).all()
        assert group.attrs["role"] == ("test" if i >= 6 else "train")
        picture = np.asarray(Image.open(trained["out"] / f"s{i}" / "attention.png"))
        assert picture.ndim == 3 and picture.shape[0] == picture.shape[1]  # over the square slide's thumbnail
    assert trained["summary"]["heatmaps"] == 8


def test_missing_features_name_the_slide_and_the_fix(cohort):
    root = cohort["root"]
    csv_path = _write_cohort(root / "with_missing.csv", cohort["rows"])  # slide8 has no features
    code, stdout, err = _run(
        ["train", "mil", csv_path, "--features", "resnet18", "--out", str(root / "run_missing")]
        + ["--stores", str(cohort["stores"]), "--model", "summary", "--test-size", "0.4", "-q"]
    )
    assert code == 1  # the other slides were still used
    assert "slide s8" in err and "eosin embed" in err and "--encoder resnet18" in err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["left_out"] == ["s8"] and summary["n_slides"] == 8


def test_unknown_encoder_is_an_error_for_every_slide(cohort):
    root = cohort["root"]
    csv_path = _write_cohort(root / "plain.csv", cohort["rows"][:8])
    code, _, err = _run(
        ["train", "mil", csv_path, "--features", "uni2", "--out", str(root / "run_uni")]
        + ["--stores", str(cohort["stores"]), "-q"]
    )
    assert code == 1 and "no slide of the cohort has features 'uni2'" in err


def test_patient_in_two_splits_is_refused(cohort):
    root = cohort["root"]
    rows = [(p, s, "p0" if s in ("s0", "s7") else pid, y) for p, s, pid, y in cohort["rows"][:8]]
    csv_path = _write_cohort(root / "leak.csv", rows, ["train"] * 6 + ["test"] * 2)
    code, _, err = _run(
        ["train", "mil", csv_path, "--features", "resnet18", "--out", str(root / "run_leak")]
        + ["--stores", str(cohort["stores"]), "-q"]
    )
    assert code == 1 and "patient 'p0'" in err and not (root / "run_leak" / "predictions.csv").exists()


def test_folds_predict_every_slide_once_with_held_out_attention(cohort):
    from eosin.io import SlideStore

    root = cohort["root"]
    csv_path = _write_cohort(root / "folds.csv", cohort["rows"][:8])
    out = root / "run_folds"
    code, stdout, err = _run(
        [
            "train",
            "mil",
            csv_path,
            "--features",
            "resnet18",
            "--out",
            str(out),
            "--stores",
            str(cohort["stores"]),
        ]
        + ["--model", "clam-mb", "--folds", "2", "--epochs", "1", "--hidden", "8", "--device", "cpu", "-q"]
    )
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["id"] for r in rows) == [f"s{i}" for i in range(8)]
    assert {r["fold"] for r in rows} == {"0", "1"}
    assert (out / "fold0" / "model" / "weights.safetensors").exists()
    roles = {
        SlideStore.open(cohort["stores"] / f"slide{i}" / "store.zarr")
        .read_group("attention", summary["key"])
        .attrs["role"]
        for i in range(8)
    }
    assert roles == {"test"}


def test_mean_rule_reads_stored_tile_predictions(cohort):
    """``--model mean`` takes bags from ``predictions/<key>`` (as eosin predict writes them): p = mean tile proba."""
    from eosin.io import SlideStore

    root = cohort["root"]
    expected = {}
    for i in range(8):
        store = SlideStore.open(cohort["stores"] / f"slide{i}" / "store.zarr")
        gkey = store.keys("grids")[0]
        n = store.read_group("grids", gkey).attrs["n_tiles"]
        p_tumour = np.linspace(0.1, 0.9, n, dtype=np.float32) * (1.0 if i % 2 else 0.5)
        proba = np.stack([1 - p_tumour, p_tumour], axis=1)
        store.write_group(
            "predictions",
            "tilemodel_abc123",
            {"proba": proba},
            {"classes": ["normal", "tumour"], "grid": gkey},
        )
        expected[f"s{i}"] = float(p_tumour.mean())
    # the cohort's path column may name the stores themselves (no --stores needed)
    rows = [
        (str(cohort["stores"] / f"slide{i}" / "store.zarr"), *r[1:]) for i, r in enumerate(cohort["rows"][:8])
    ]
    csv_path = _write_cohort(root / "rules.csv", rows, ["train"] * 4 + ["test"] * 4)
    out = root / "run_mean"
    code, stdout, err = _run(
        [
            "train",
            "mil",
            csv_path,
            "--features",
            "tilemodel",
            "--out",
            str(out),
        ]
        + ["--model", "mean", "-q"]
    )
    assert code == 0, err
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ["s4", "s5", "s6", "s7"]
    for r in rows:
        assert float(r["p_tumour"]) == pytest.approx(expected[r["id"]], abs=1e-5)
    assert json.loads(stdout.strip().splitlines()[-1])["key"] is None  # no attention for a rule


def test_run_records_state_the_values_actually_used(trained):
    """``--epochs 3 --device cpu`` is what run.json and model/config.json say (not the defaults 20 and auto), with
    the resolved device and precision, the seed, the versions and hashes of the inputs."""
    import hashlib

    from eosin.io import SlideStore

    run = json.loads((trained["out"] / "run.json").read_text())
    config = json.loads((trained["out"] / "model" / "config.json").read_text())
    assert run["params"]["epochs"] == 3 == config["params"]["epochs"]
    assert run["params"]["device"] == "cpu" == config["params"]["device"]
    assert run["device"] == "cpu" == config["device"] == config["training"]["device"]
    assert run["precision"] == "fp32" and run["seed"] == 0 == config["training"]["seed"]
    assert len(config["history"]) <= 3
    import torch

    assert run["versions"]["torch"] == torch.__version__ and run["versions"]["eosin"]
    cohort_csv = trained["root"] / "cohort.csv"
    assert run["inputs"]["cohort_sha256"] == hashlib.sha256(cohort_csv.read_bytes()).hexdigest()
    store = SlideStore.open(trained["stores"] / "slide0" / "store.zarr")
    (key,) = [k for k in store.keys("features") if k.startswith("resnet18--")]
    assert run["inputs"]["weights_hashes"] == [store.read_group("features", key).attrs["weights_hash"]]
    assert config["training"]["inputs"] == run["inputs"] and len(run["inputs"]["bags_sha256"]) == 64


def _bag(stores, i: int, kind: str, prefix: str) -> np.ndarray:
    from eosin.io import SlideStore

    store = SlideStore.open(stores / f"slide{i}" / "store.zarr")
    key = next(k for k in store.keys(kind) if k.startswith(prefix))
    group = store.read_group(kind, key)
    return np.asarray(group["proba" if kind == "predictions" else "features"][...], dtype=np.float32)


@pytest.mark.parametrize("model", ["thresholds", "vote", "mean", "summary"])
def test_every_aggregator_is_saved_and_applies_to_new_slides(cohort, model):
    """``train mil --model vote|mean|thresholds|summary`` saves a model that load_aggregator reads and applies to
    a slide it never saw (slide8), exactly as the same aggregator fitted here in Python does."""
    from eosin.aggregate import get_aggregator, load_aggregator
    from eosin.io import SlideStore

    root, stores = cohort["root"], cohort["stores"]
    rng = np.random.default_rng(3)
    for i in range(9):  # DeepSlide-like tile probabilities; slide8 is the new slide
        store = SlideStore.open(stores / f"slide{i}" / "store.zarr")
        gkey = store.keys("grids")[0]
        n = store.read_group("grids", gkey).attrs["n_tiles"]
        p = rng.uniform(0.2, 0.55, n).astype(np.float32)
        if i % 2:
            p[rng.integers(n)] = 0.9
        proba = np.stack([1 - p, p], axis=1)
        attrs = {"classes": ["normal", "tumour"], "grid": gkey}
        store.write_group("predictions", "dsmodel_def456", {"proba": proba}, attrs, overwrite=True)
    split = ["train"] * 6 + ["test"] * 2
    csv_path = _write_cohort(root / f"save_{model}.csv", cohort["rows"][:8], split)
    source, kind = ("resnet18", "features") if model == "summary" else ("dsmodel", "predictions")
    out = root / f"run_save_{model}"
    code, stdout, err = _run(
        ["train", "mil", csv_path, "--features", source, "--out", str(out), "--stores", str(stores)]
        + ["--model", model, "-q"]
    )
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["models"] == [str(out / "model")]
    loaded = load_aggregator(out / "model")
    name = "majority" if model == "vote" else model
    params = {"bag_kind": "features"} if model == "summary" else {"classes": ["normal", "tumour"]}
    direct = get_aggregator(name, **params).fit(
        [_bag(stores, i, kind, source) for i in range(6)], [r[3] for r in cohort["rows"][:6]]
    )
    assert type(loaded) is type(direct) and loaded.classes_.tolist() == ["normal", "tumour"]
    if model == "thresholds":
        np.testing.assert_array_equal(loaded.thresholds_, direct.thresholds_)
    test_bags = [_bag(stores, i, kind, source) for i in (6, 7)]
    with open(out / "predictions.csv") as f:
        saved = np.array([[float(r["p_normal"]), float(r["p_tumour"])] for r in csv.DictReader(f)])
    np.testing.assert_allclose(loaded.predict_proba(test_bags), saved, atol=1e-6)
    if model != "summary":  # slide8 was never embedded, but has tile predictions
        new = [_bag(stores, 8, kind, source)]
        np.testing.assert_allclose(loaded.predict_proba(new), direct.predict_proba(new))
        assert loaded.predict(new) == direct.predict(new)

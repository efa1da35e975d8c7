"""Predictions CSV, slide/patient aggregation, the report files, the ``evaluate`` CLI, and a real-data run."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import DATA, require
from eosin.cli import _evaluate as cli_evaluate
from eosin.cli._main import main
from eosin.errors import EosinError, UsageError
from eosin.evaluate import (
    aggregate_predictions,
    classification_metrics,
    evaluate_predictions,
    read_predictions_csv,
    write_report,
)

CLASSES = ("TUM", "STR", "NORM")


def _write_csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def predictions_csv(tmp_path_factory) -> Path:
    """20 patients x 2 slides x 12 tiles, one tissue class per patient, noisy probabilities."""
    rng = np.random.default_rng(0)
    rows = []
    for patient in range(20):
        label = patient % 3
        for slide in range(2):
            for t in range(12):
                p = rng.dirichlet(np.ones(3))
                p[label] += rng.random() * 1.5
                p /= p.sum()
                rows.append(
                    [
                        f"P{patient}-S{slide}-T{t}",
                        CLASSES[label],
                        CLASSES[int(p.argmax())],
                        *[f"{v:.6f}" for v in p],
                        f"P{patient}",
                        f"P{patient}-S{slide}",
                    ]
                )
    header = ["id", "label", "pred", *[f"p_{c}" for c in CLASSES], "patient", "slide"]
    return _write_csv(tmp_path_factory.mktemp("pred") / "predictions.csv", header, rows)


def test_read_predictions_csv(predictions_csv):
    table = read_predictions_csv(predictions_csv)
    assert len(table) == 480
    assert table.classes == CLASSES
    assert table.proba.shape == (480, 3)
    assert np.allclose(table.proba.sum(axis=1), 1, atol=1e-5)
    assert set(table.columns) == {"patient", "slide"}
    assert table.y_true[0] == "TUM" and table.columns["slide"][0] == "P0-S0"


@pytest.mark.parametrize(
    ("header", "rows", "error", "pattern"),
    [
        (
            ["id", "truth", "pred", "p_a", "p_b"],
            [["1", "a", "a", "1", "0"]],
            UsageError,
            r"missing column 'label'; columns seen: \['id', 'truth', 'pred', 'p_a', 'p_b'\]",
        ),
        (
            ["id", "label", "pred", "p_a", "p_b"],
            [["1", "a", "c", "1", "0"]],
            UsageError,
            r"column 'pred' holds \['c'\], not among the classes .*\['a', 'b'\]",
        ),
        (["id", "label", "pred", "p_a", "p_b"], [], EosinError, "no rows"),
        (
            ["id", "label", "pred", "p_a", "p_b"],
            [["1", "a", "a", "1", "0"], ["1", "b", "b", "0", "1"]],
            UsageError,
            "appear more than once",
        ),
        (["id", "label", "pred", "p_a", "p_b"], [["1", "a", "a", "x", "0"]], UsageError, "'x', not a number"),
        (["id", "label", "pred", "p_a", "p_b"], [["1", "a", "a", "-0.5", "1.5"]], UsageError, "non-negative"),
        (["id", "label", "pred", "p_a", "p_b"], [["1", "a", "a", "1"]], UsageError, "row 2 has 4 fields"),
    ],
)
def test_csv_validation_errors(tmp_path, header, rows, error, pattern):
    path = _write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(error, match=pattern) as info:
        read_predictions_csv(path)
    assert str(path) in str(info.value)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(EosinError, match="empty"):
        read_predictions_csv(empty)
    with pytest.raises(EosinError, match="no such"):
        read_predictions_csv(tmp_path / "absent.csv")


def test_probabilities_not_summing_to_one_are_renormalized_with_a_warning(tmp_path):
    path = _write_csv(
        tmp_path / "p.csv",
        ["id", "label", "pred", "p_a", "p_b"],
        [["1", "a", "a", "0.8", "0.4"], ["2", "b", "b", "0.3", "0.7"]],
    )
    with pytest.warns(UserWarning, match=r"1 of 2 rows do not sum to 1"):
        table = read_predictions_csv(path)
    assert table.proba.ravel() == pytest.approx([2 / 3, 1 / 3, 0.3, 0.7])


def test_csv_without_probabilities_gives_label_metrics_only(tmp_path):
    path = _write_csv(
        tmp_path / "p.csv", ["id", "label", "pred"], [["1", "x", "x"], ["2", "y", "x"], ["3", "y", "y"]]
    )
    table = read_predictions_csv(path)
    assert table.proba is None and table.classes == ("x", "y")
    report = evaluate_predictions(table, n_bootstrap=0)
    assert report["accuracy"].value == pytest.approx(2 / 3)
    assert "roc_auc" not in report.metrics


def test_aggregate_mean_and_majority_by_hand():
    data = {
        "id": ["t1", "t2", "t3", "t4", "t5"],
        "label": ["a", "a", "a", "b", "b"],
        "pred": ["a", "b", "b", "b", "a"],
        "p_a": [0.9, 0.4, 0.45, 0.2, 0.6],
        "p_b": [0.1, 0.6, 0.55, 0.8, 0.4],
        "patient": ["P1", "P1", "P1", "P2", "P2"],
    }
    mean = aggregate_predictions(data, by="patient", rule="mean")
    assert mean.ids.tolist() == ["P1", "P2"]
    assert mean.y_true.tolist() == ["a", "b"]
    # P1: p_a = (0.9 + 0.4 + 0.45) / 3 = 0.5833 -> a; P2: p_a = (0.2 + 0.6) / 2 = 0.4 -> b
    assert mean.proba[:, 0] == pytest.approx([1.75 / 3, 0.4])
    assert mean.y_pred.tolist() == ["a", "b"]
    assert mean.columns["n_samples"].tolist() == ["3", "2"]
    vote = aggregate_predictions(data, by="patient", rule="majority")
    # P1 votes a, b, b -> b; P2 votes b, a -> tie, broken by the higher mean probability (b: 0.6 > a: 0.4)
    assert vote.y_pred.tolist() == ["b", "b"]
    assert vote.proba.ravel() == pytest.approx([1 / 3, 2 / 3, 0.5, 0.5])


def test_aggregate_rejects_inconsistent_labels_and_bad_options():
    data = {
        "label": ["a", "b", "b"],
        "pred": ["a", "b", "b"],
        "p_a": [1, 0, 0],
        "p_b": [0, 1, 1],
        "slide": ["S1", "S1", "S2"],
    }
    with pytest.raises(UsageError, match=r"slide 'S1' has samples with different true labels \['a', 'b'\]"):
        aggregate_predictions(data, by="slide")
    with pytest.raises(UsageError, match="no such column"):
        aggregate_predictions(data, by="patient")
    with pytest.raises(UsageError, match="unknown aggregation rule"):
        aggregate_predictions(data, by="slide", rule="median")


def test_levels_and_cluster_bootstrap(predictions_csv):
    table = read_predictions_csv(predictions_csv)
    tile = evaluate_predictions(table, level="tile", n_bootstrap=200)
    slide = evaluate_predictions(table, level="slide", n_bootstrap=200)
    patient = evaluate_predictions(table, level="patient", n_bootstrap=200)
    assert (tile.counts["n"], slide.counts["n"], patient.counts["n"]) == (480, 40, 20)
    assert tile.bootstrap == "cluster" and tile.counts["n_groups"] == 20  # tiles resampled by patient
    assert slide.bootstrap == "cluster" and slide.counts["n_groups"] == 20  # slides resampled by patient
    assert patient.bootstrap == "stratified"
    # patient level equals the metrics of the hand-aggregated table
    agg = aggregate_predictions(table, by="patient", rule="mean")
    direct = classification_metrics(agg.y_true, agg.y_pred, agg.proba, classes=agg.classes, n_bootstrap=0)
    assert patient["balanced_accuracy"].value == direct["balanced_accuracy"].value


def test_write_report(predictions_csv, tmp_path):
    report = evaluate_predictions(read_predictions_csv(predictions_csv), n_bootstrap=100)
    files = write_report(report, tmp_path / "rep", title="Test report", source=str(predictions_csv))
    names = {p.name for p in (tmp_path / "rep").iterdir()}
    assert names == {
        "report.md",
        "report.html",
        "metrics.json",
        "roc.png",
        "pr.png",
        "confusion.png",
        "calibration.png",
    }  # no temporary files left behind
    for key in ("roc", "pr", "confusion", "calibration"):
        with Image.open(files[key]) as im:
            im.load()
            assert im.format == "PNG" and im.width >= 500 and im.height >= 400, key
            assert np.asarray(im.convert("L")).std() > 10  # not blank
    html_text = files["html"].read_text()
    for src in re.findall(r'<img src="([^"]+)"', html_text):
        assert not Path(src).is_absolute() and (files["html"].parent / src).is_file()
    md = files["markdown"].read_text()
    assert f"| balanced_accuracy | {report['balanced_accuracy'].value:.3f} [" in md
    assert "## Confusion matrix" in md and "![roc](roc.png)" in md
    summary = json.loads(files["json"].read_text())
    assert summary["confusion_matrix"] == report.confusion_matrix.tolist()
    assert summary["metrics"]["accuracy"]["value"] == report["accuracy"].value


def test_cli_json_matches_api(predictions_csv):
    result = CliRunner().invoke(
        cli_evaluate.evaluate,
        [
            "classification",
            str(predictions_csv),
            "--json",
            "--level",
            "slide",
            "--bootstrap",
            "150",
            "--seed",
            "7",
        ],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)  # exactly one JSON object
    api = evaluate_predictions(read_predictions_csv(predictions_csv), level="slide", n_bootstrap=150, seed=7)
    assert printed == json.loads(json.dumps(api.to_json()))
    assert set(printed["accuracy"]) == {"value", "ci_low", "ci_high"}


def test_cli_nan_is_null_and_table_output(tmp_path):
    # class "c" is never true nor predicted: its recall is undefined
    path = _write_csv(
        tmp_path / "p.csv",
        ["id", "label", "pred", "p_a", "p_b", "p_c"],
        [[str(i), "ab"[i % 2], "ab"[(i // 3) % 2], "0.5", "0.5", "0"] for i in range(12)],
    )
    out = CliRunner().invoke(
        cli_evaluate.evaluate, ["classification", str(path), "--json", "--bootstrap", "20"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["recall[c]"] == {"value": None, "ci_low": None, "ci_high": None}
    table = CliRunner().invoke(cli_evaluate.evaluate, ["classification", str(path), "--bootstrap", "20"])
    assert table.exit_code == 0
    assert re.search(r"balanced_accuracy\s+0\.\d{3} \[", table.output)
    assert "confusion matrix" in table.output


def test_cli_errors_through_main(tmp_path, capsys):
    path = _write_csv(tmp_path / "p.csv", ["id", "truth", "pred"], [["1", "a", "a"]])
    code = main(["evaluate", "classification", str(path), "--json"])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing column 'label'" in err and str(path) in err and "Traceback" not in err
    data = _write_csv(tmp_path / "q.csv", ["id", "label", "pred", "p_a", "p_b"], [["1", "a", "a", "1", "0"]])
    assert main(["evaluate", "classification", str(data), "--level", "patient"]) == 2
    assert "cannot aggregate by 'patient'" in capsys.readouterr().err


def test_cli_report_option(predictions_csv, tmp_path):
    code = main(
        [
            "evaluate",
            "classification",
            str(predictions_csv),
            "--report",
            str(tmp_path / "r"),
            "--bootstrap",
            "50",
            "--level",
            "patient",
        ]
    )
    assert code == 0
    assert (tmp_path / "r" / "report.html").is_file() and (tmp_path / "r" / "roc.png").is_file()


def test_evaluate_group_loads_plugged_subcommands(monkeypatch):
    """Another module's subcommand plugs into ``evaluate`` lazily, like ``segmentation``."""
    monkeypatch.setitem(
        cli_evaluate._PLUGINS, "dummy", ("eosin.cli._evaluate:classification", "A test plug.")
    )
    monkeypatch.setitem(cli_evaluate._PLUGINS, "absent", ("eosin.cli._no_such_module:cmd", "Not installed."))
    result = CliRunner().invoke(cli_evaluate.evaluate, ["--help"])
    assert "dummy" in result.output and "absent" not in result.output
    result = CliRunner().invoke(cli_evaluate.evaluate, ["dummy", "--help"])
    assert result.exit_code == 0 and "PREDICTIONS" in result.output


# ---------------------------------------------------------------- real data


def _colour_features(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float64) / 255
    flat = rgb.reshape(-1, 3)
    return np.concatenate([flat.mean(0), flat.std(0), np.percentile(flat, [10, 50, 90], axis=0).ravel()])


def _nearest_centroid_held_out(x: np.ndarray, y: np.ndarray, folds: np.ndarray, classes: list[str]):
    """Predict each fold from the centroids of the other folds; softmax of negative squared distances."""
    x = (x - x.mean(0)) / x.std(0)
    pred = np.empty(y.size, dtype=object)
    proba = np.zeros((y.size, len(classes)))
    for f in np.unique(folds):
        test, train = folds == f, folds != f
        d = np.full((test.sum(), len(classes)), np.inf)
        for j, c in enumerate(classes):
            members = train & (y == c)
            if members.any():  # a class seen only in the held-out fold cannot be predicted
                d[:, j] = ((x[test] - x[members].mean(0)) ** 2).sum(1)
        s = np.exp(-(d - d.min(1, keepdims=True)) / 2)
        proba[test] = s / s.sum(1, keepdims=True)
        pred[test] = np.array(classes)[d.argmin(1)]
    return pred.astype(str), proba


def test_real_crc_tiles_nearest_centroid_beats_chance(tmp_path):
    folder = require(DATA / "tiles" / "crc-val-he-7k")
    paths = sorted(folder.glob("*.png"))
    y = np.array([p.name.split("-")[0] for p in paths])
    classes = sorted(set(y))
    x = np.stack([_colour_features(p) for p in paths])
    pred, proba = _nearest_centroid_held_out(x, y, np.arange(y.size), classes)  # leave-one-tile-out
    report = classification_metrics(y, pred, proba, classes=classes, n_bootstrap=1000)
    assert report.counts["n"] == 32 and len(classes) == 8
    chance = 1 / len(classes)
    # colour alone separates CRC tissue classes far better than chance (measured: accuracy 0.53, AUC 0.80)
    assert report["balanced_accuracy"].ci_low > chance
    assert report["roc_auc"].ci_low > 0.5
    files = write_report(report, tmp_path / "crc", title="Nearest colour centroid, CRC-VAL-HE-7K")
    assert files["roc"].stat().st_size > 10_000


def test_real_kather_slide_held_out_with_cluster_bootstrap():
    """Kather 2016 tiles name their source slide: hold out whole slides and resample slides for the CIs."""
    root = require(DATA / "tiles" / "kather2016")
    paths = sorted(root.glob("*/*.jpg"))
    y = np.array([p.parent.name.split("_", 1)[1] for p in paths])
    slides = np.array([re.search(r"CRC-Prim-HE-\d+", p.name).group(0) for p in paths])
    classes = sorted(set(y))
    x = np.stack([_colour_features(p) for p in paths])
    pred, proba = _nearest_centroid_held_out(x, y, slides, classes)  # no slide in both train and test
    tile = classification_metrics(y, pred, proba, classes=classes, n_bootstrap=1000)
    cluster = classification_metrics(y, pred, proba, classes=classes, groups=slides, n_bootstrap=1000)
    assert tile.counts["n"] == len(paths) == 33 and cluster.counts["n_groups"] == len(set(slides))
    assert cluster["accuracy"].value == tile["accuracy"].value
    assert tile["balanced_accuracy"].value > 1 / len(classes)
    for m in cluster.metrics.values():
        assert math.isnan(m.value) or math.isnan(m.ci_low) or m.ci_low <= m.ci_high
    # a slide holds several tissue classes, so slide-level aggregation of these labels is refused by name
    table = {
        "label": y,
        "pred": pred,
        **{f"p_{c}": proba[:, j] for j, c in enumerate(classes)},
        "slide": slides,
    }
    with pytest.raises(UsageError, match=r"slide 'CRC-Prim-HE-03' has samples with different true labels"):
        aggregate_predictions(table, by="slide")


def test_segmentation_names_are_reexported_from_their_module():
    import eosin.evaluate as ev
    from eosin.evaluate import _segmentation

    for name in _segmentation.__all__:
        assert getattr(ev, name) is getattr(_segmentation, name)
        assert name in dir(ev)
    assert "classification_metrics" in dir(ev)
    with pytest.raises(AttributeError):
        ev.no_such_metric  # noqa: B018


def test_report_states_when_intervals_are_unreliable(tmp_path):
    y = ["a"] * 4 + ["b"] * 30
    pred = ["a"] * 4 + ["b"] * 30
    few = classification_metrics(y, pred, groups=[f"P{i % 6}" for i in range(34)], n_bootstrap=50)
    text = write_report(few, tmp_path / "few")["markdown"].read_text()
    assert "only 6 patients" in text and "smallest class has 4 samples" in text
    many = classification_metrics(["a", "b"] * 30, ["a", "b"] * 30, n_bootstrap=50)
    assert "Caution" not in write_report(many, tmp_path / "many")["markdown"].read_text()


def test_tile_level_by_column_names_the_cluster_column(predictions_csv):
    table = read_predictions_csv(predictions_csv)
    by_slide = evaluate_predictions(table, level="tile", by="slide", n_bootstrap=50)
    assert by_slide.bootstrap == "cluster" and by_slide.counts["n_groups"] == 40
    with pytest.raises(UsageError, match="no column 'donor'"):
        evaluate_predictions(table, level="tile", by="donor")
    no_patient = {"label": table.y_true, "pred": table.y_pred}
    assert evaluate_predictions(no_patient, n_bootstrap=20).bootstrap == "stratified"

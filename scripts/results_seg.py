#!/usr/bin/env python3
"""Segmentation results on the real data in ../shared/data, for docs/results.md ("## Segmentation").

Each run holds images out **before** training (the model never sees them; its checkpoint is chosen on a validation
split of the training images), trains a U-Net with ``eosin train seg``, segments the held-out images with
``eosin segment`` and scores them with ``eosin evaluate segmentation``, exactly the commands a user runs.

- ``monuseg``: MoNuSeg 2018 training images (30 here, 20 with XML nucleus polygons). Held out: 6 images with XML
  polygons (seeded choice), so AJI and PQ rest on real instances; the other 24 train (20 %) and validate.
- ``glas``: the 12 GlaS images here; train testA_25–32, test testA_33–36.

Usage:
    nice python scripts/results_seg.py monuseg --encoder efficientnet_lite0 --weights imagenet --epochs 20 WORK
    nice python scripts/results_seg.py glas --encoder efficientnet_lite0 --weights none --epochs 20 WORK

Prints one JSON object (the split, the training record's epochs, the scores, the wall time) and writes it to
WORK/<data set>-<encoder>-<weights>/result.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("EOSIN_DATA", ROOT.parent / "shared" / "data")) / "segmentation"
SEED = 0


def eosin(*args: str) -> dict:
    """Run one eosin command as a user would; its last JSON line."""
    print("$ eosin " + " ".join(args), file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, "-m", "eosin", *args], stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:  # its stderr went to ours
        raise SystemExit(f"eosin {' '.join(args)} failed ({proc.returncode})")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def link(files: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = folder / f.name
        if not target.exists():
            target.symlink_to(f.resolve())


def split_monuseg(work: Path, fold: int = 1) -> dict[str, list[str]]:
    src = DATA / "monuseg-train"
    images = sorted((src / "tissue_image").iterdir())
    stems = {p.stem for p in images}
    with_xml = sorted(p.stem for p in (src / "annotations").glob("*.xml") if p.stem in stems)
    rng = np.random.default_rng(SEED)
    test = sorted(rng.choice(with_xml, size=6, replace=False).tolist())
    if fold == 2:  # the other images with XML polygons: the two folds test every one of them once
        test = [s for s in with_xml if s not in test]
    train = sorted(p.stem for p in images if p.stem not in test)
    for part, stems in (("train", train), ("test", test)):
        link([p for p in images if p.stem in stems], work / part / "images")
        link([p for p in (src / "masks").iterdir() if p.stem in stems], work / part / "masks")
        link([p for p in (src / "annotations").glob("*.xml") if p.stem in stems], work / part / "annotations")
    return {"train": train, "test": test}


def split_glas(work: Path) -> dict[str, list[str]]:
    src = DATA / "glas"
    train = [f"testA_{i}" for i in range(25, 33)]
    test = [f"testA_{i}" for i in range(33, 37)]
    for part, stems in (("train", train), ("test", test)):
        link([p for p in (src / "images").iterdir() if p.stem in stems], work / part / "images")
        link([p for p in (src / "masks").iterdir() if p.stem in stems], work / part / "masks")
    return {"train": train, "test": test}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", choices=["monuseg", "glas"])
    ap.add_argument("work", type=Path)
    ap.add_argument("--encoder", default="efficientnet_lite0")
    ap.add_argument("--weights", default="imagenet", help="imagenet or none")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--crops", type=int, default=160, help="training crops per epoch")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--encoder-lr", type=float, default=1.0, help="eosin train seg --encoder-lr")
    ap.add_argument("--hed", type=float, default=0.05, help="eosin train seg --hed (stain jitter)")
    ap.add_argument(
        "--extra", action="append", default=[], choices=["monusac", "pannuke", "lizard-consep"],
        help="also train on this data set's images and binary masks (repeatable); the test images stay MoNuSeg's",
    )
    ap.add_argument(
        "--fold", type=int, choices=[1, 2], default=1,
        help="MoNuSeg: 1 tests 6 seeded images with XML, 2 the other XML images (training on the rest, fold 1's too)",
    )
    ap.add_argument("--tag", default="", help="suffix of the run folder (for variants of one encoder)")
    ap.add_argument("--tta", action="store_true", help="eosin segment --tta (flip averaging)")
    ap.add_argument("--seed-threshold", type=float, help="eosin segment --seed-threshold (default: the model's)")
    ap.add_argument(
        "--reuse-model", action="store_true", help="segment and score with WORK's trained model, if there is one"
    )
    args = ap.parse_args()

    fold = "-fold2" if args.fold == 2 else ""
    run = args.work / f"{args.dataset}-{args.encoder}-{args.weights}{fold}{args.tag}"
    data_name = "+".join([args.dataset, *args.extra]) + fold
    data = args.work / f"{data_name}-data"
    split = split_monuseg(data, args.fold) if args.dataset == "monuseg" else split_glas(data)
    for name in args.extra:
        extra = sorted((DATA / name / "images").iterdir())
        link(extra, data / "train" / "images")
        link(sorted((DATA / name / "masks").iterdir()), data / "train" / "masks")
        split[name] = [p.stem for p in extra]
    train = [
        "train", "seg", "--images", str(data / "train" / "images"), "--masks", str(data / "train" / "masks"),
        "--out", str(run / "model"), "--encoder", args.encoder, "--epochs", str(args.epochs),
        "--crops-per-epoch", str(args.crops), "--crop", str(args.crop), "--batch-size", "8",
        "--lr", str(args.lr), "--val-fraction", "0.2" if args.dataset == "monuseg" else "0.25",
        "--seed", str(SEED), "--hed", str(args.hed), "--encoder-lr", str(args.encoder_lr),
    ]  # fmt: skip
    if args.weights != "none":
        train += ["--encoder-weights", args.weights]
    if args.dataset == "monuseg":
        train += ["--instances", str(data / "train" / "annotations"), "--mpp", "0.25"]
    t0 = time.perf_counter()
    saved = run / "model" / "config.json"
    if args.reuse_model and saved.is_file():
        record = json.loads(saved.read_text())["training"]
        previous = run / "result.json"
        train_s = json.loads(previous.read_text())["train_seconds"] if previous.is_file() else None
    else:
        record = eosin(*train)
        train_s = time.perf_counter() - t0
    pred = run / ("pred-tta" if args.tta else "pred")
    seg = ["segment", str(data / "test" / "images"), "--model", str(run / "model"), "--out", str(pred), "-q"]
    if args.dataset == "glas":
        seg += ["--min-size", "200"]
    if args.tta:
        seg += ["--tta"]
    if args.seed_threshold is not None:
        seg += ["--seed-threshold", str(args.seed_threshold)]
    t1 = time.perf_counter()
    eosin(*seg)
    segment_s = time.perf_counter() - t1
    truths = {"masks": data / "test" / "masks"}
    if args.dataset == "monuseg":
        truths = {"xml": data / "test" / "annotations", **truths}
    evaluated = {
        name: eosin("evaluate", "segmentation", str(pred), str(folder), "--json") for name, folder in truths.items()
    }
    scores = {name: {**e["overall"], "ci95": e["ci"]} for name, e in evaluated.items()}
    result = {
        "dataset": args.dataset,
        "encoder": args.encoder,
        "weights": args.weights,
        "split": split,
        "epochs": args.epochs,
        "crops_per_epoch": args.crops,
        "hed": args.hed,
        "encoder_lr": args.encoder_lr,
        "extra_training_data": args.extra,
        "fold": args.fold,
        "train_seconds": None if train_s is None else round(train_s, 1),
        "tta": args.tta,
        "seed_threshold": args.seed_threshold,
        "segment_seconds": round(segment_s, 1),
        "training": {k: record.get(k) for k in ("history", "best_epoch", "split", "device", "precision")},
        "instances": json.loads(saved.read_text()).get("instances") if saved.is_file() else None,
        "scores": scores,
    }
    run.mkdir(parents=True, exist_ok=True)
    (run / ("result-tta.json" if args.tta else "result.json")).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The robustness example of docs/results.md: an EfficientNet-Lite0 linear probe (ImageNet weights from the
installed package) for tumour vs normal lymph node, then ``eosin evaluate robustness`` on held-out tiles.

``python scripts/robustness_camelyon.py OUT`` (data from ``EOSIN_DATA``, default ``../shared/data``).

Tiles: non-overlapping 160 px crops of the 32 CAMELYON 512 px tiles, labelled by their tumour masks (tumour > 70 %
of the crop, normal < 10 %, others left out); source tiles with an even index train, odd ones test (no source tile
on both sides). Perturbations: HED jitter 0.05/0.1/0.2, stain transfer (Reinhard, Macenko) to three real targets,
JPEG 70/30/10, blur 1/2/4 px; normalisers before the model: Reinhard, Macenko, fitted to the first target.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("EOSIN_DATA", ROOT.parent / "shared" / "data"))
EOSIN = str(Path(sys.executable).with_name("eosin"))


def crops(out: Path, size: int = 160) -> None:
    source = DATA / "segmentation" / "camelyon"
    with open(source / "mask_stats.csv") as fh:
        rows = list(csv.DictReader(fh))
    for index, row in enumerate(rows):
        rgb = np.asarray(Image.open(source / row["image"]).convert("RGB"))
        tumour = np.asarray(Image.open(source / row["mask"]).convert("L")) > 127
        split = "train" if index % 2 == 0 else "test"
        for i in range(3):
            for j in range(3):
                top, left = 16 + i * size, 16 + j * size
                share = tumour[top : top + size, left : left + size].mean()
                if 0.1 <= share <= 0.7:
                    continue
                folder = out / split / ("tumour" if share > 0.7 else "normal")
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rgb[top : top + size, left : left + size]).save(folder / f"{index}_{i}{j}.png")


def main(out: str) -> int:
    out_dir = Path(out)
    crops(out_dir / "tiles")
    model = out_dir / "model"
    train = [EOSIN, "train", "tiles", str(out_dir / "tiles" / "train"), "--encoder", "efficientnet_lite0"]
    train += ["--probe", "linear", "--input-size", "112", "--val-fraction", "0", "--out", str(model), "-q"]
    subprocess.run(train, check=True)
    stain = DATA / "stain"
    run = [EOSIN, "evaluate", "robustness", str(out_dir / "tiles" / "test"), "--model", str(model)]
    for name in ("histoqc-template1.png", "tiatoolbox-target.png", "histoqc-template3.png"):
        run += ["--targets", str(stain / name)]
    run += ["--hed", "0.05,0.1,0.2", "--jpeg", "70,30,10", "--blur", "1,2,4", "--transfer", "reinhard,macenko"]
    run += ["--normalizers", "reinhard,macenko", "--out", str(out_dir / "robustness"), "-q"]
    return subprocess.run(run, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "eosin-out/robustness-camelyon"))

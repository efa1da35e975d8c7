#!/usr/bin/env python3
"""Where a nucleus segmenter loses AJI on held-out images: foreground or separation (docs/results.md).

For each image with Aperio XML polygons, the model's instances are scored as they are and against two oracles
that each repair one half of the problem with the truth:

- ``foreground oracle``: the predicted instances cut to the true foreground (no false-positive pixel, the
  predicted separation kept). What a perfect foreground would give with this model's separation.
- ``separation oracle``: the predicted foreground, each connected component split among the true nuclei it
  touches by nearest true nucleus (components touching none kept whole). What a perfect separation would give
  with this model's foreground.

It also counts the false-positive pixels in matched objects (IoU > 0.5: the object drawn too large) and elsewhere
(objects without a partner), and writes a figure: image, truth (green) and prediction (red) outlines, and the
foreground probability, on a crop of the first two images.

Usage:
    python scripts/seg_error_analysis.py MODEL_DIR IMAGES_DIR XML_DIR OUT_DIR [--tta] [--crop Y X SIZE]

Prints one JSON line per image and one for the mean; writes OUT_DIR/analysis.json and OUT_DIR/errors.jpg.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def separation_oracle(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The predicted foreground split among the true nuclei by nearest true nucleus, component by component."""
    from scipy import ndimage

    _, (rows, cols) = ndimage.distance_transform_edt(truth == 0, return_indices=True)
    nearest = truth[rows, cols]
    comps, n = ndimage.label(pred > 0)
    touches = np.r_[False, ndimage.maximum(truth > 0, comps, index=np.arange(1, n + 1)).astype(bool)]
    out = np.where(touches[comps], nearest, 0)
    alone = (comps > 0) & ~touches[comps]
    out[alone] = comps[alone] + int(truth.max())  # components that touch no nucleus stay objects of their own
    return out


def matched_pixels(pred: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """False-positive pixels inside predicted objects that match a true one (IoU > 0.5) and elsewhere."""
    both = (pred > 0) & (truth > 0)
    pairs, inter = np.unique(np.stack([truth[both], pred[both]]), axis=1, return_counts=True)
    t_area, p_area = np.bincount(truth.ravel()), np.bincount(pred.ravel())
    iou = inter / (t_area[pairs[0]] + p_area[pairs[1]] - inter)
    matched = np.zeros(p_area.size, bool)
    matched[pairs[1][iou > 0.5]] = True
    fp = (pred > 0) & (truth == 0)
    return {
        "fp_pixels_matched_objects": int((fp & matched[pred]).sum()),
        "fp_pixels_other_objects": int((fp & ~matched[pred]).sum()),
        "fn_pixels": int(((truth > 0) & (pred == 0)).sum()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("images", type=Path)
    ap.add_argument("xml", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--tta", action="store_true", help="segment with flip averaging (eosin segment --tta)")
    ap.add_argument("--crop", type=int, nargs=3, default=(300, 300, 400), metavar=("Y", "X", "SIZE"))
    args = ap.parse_args()

    from PIL import Image
    from skimage.segmentation import find_boundaries

    from eosin.evaluate import aji, read_aperio_xml
    from eosin.segment import load_segmenter, segment_image
    from eosin.segment._data import read_image

    model = load_segmenter(args.model)
    rows, panels = [], []
    for xml in sorted(args.xml.glob("*.xml")):
        image_path = next((p for p in args.images.iterdir() if p.stem == xml.stem), None)
        if image_path is None:
            continue
        image = read_image(image_path)
        seg = segment_image(image, model, tta=args.tta)
        truth = read_aperio_xml(xml, image.shape[:2])
        pred = seg.instances
        t, p = truth > 0, pred > 0
        row = {
            "id": xml.stem,
            "pixel_dice": float(2 * (t & p).sum() / (t.sum() + p.sum())),
            "aji": aji(truth, pred),
            "aji_foreground_oracle": aji(truth, np.where(t, pred, 0)),
            "aji_separation_oracle": aji(truth, separation_oracle(pred, truth)),
            "n_truth": int(truth.max()),
            "n_pred": int(len(np.unique(pred)) - 1),
            **matched_pixels(pred, truth),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        if len(panels) < 2:
            y, x, size = args.crop
            window = np.s_[y : y + size, x : x + size]
            outlined = image[window].copy()
            outlined[find_boundaries(truth[window])] = (0, 255, 0)
            outlined[find_boundaries(pred[window])] = (255, 0, 0)
            fg = np.repeat((seg.foreground[window] * 255).astype(np.uint8)[..., None], 3, axis=2)
            panels.append(np.concatenate([image[window], outlined, fg], axis=1))
    if not rows:
        raise SystemExit(f"no image in {args.images} has an XML file in {args.xml}")
    keys = [k for k in rows[0] if k != "id"]
    mean = {"id": "mean", **{k: float(np.mean([r[k] for r in rows])) for k in keys}}
    print(json.dumps(mean))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "analysis.json").write_text(json.dumps({"per_image": rows, "mean": mean, "tta": args.tta}, indent=1))
    Image.fromarray(np.concatenate(panels, axis=0)).save(args.out / "errors.jpg", quality=85)
    return 0


if __name__ == "__main__":
    sys.exit(main())

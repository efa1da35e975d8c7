"""Stain and scanner robustness of a tile classifier: controlled perturbations, metric drop and prediction flips.

The protocol (after the stain-robustness literature: Tellez et al. 2019, Stacke et al. 2021): the test tiles are
perturbed in controlled, realistic ways at graded strengths, and for each perturbation and strength the report gives

- the metric (balanced accuracy by default) on the perturbed tiles and its **drop** from the clean tiles,
- the **flip rate**: the share of tiles whose predicted class changes,

each with a paired, class-stratified bootstrap CI (the same resampled tiles for the clean and perturbed side; the
weights of :mod:`eosin.evaluate._bootstrap`). The same is done for "normaliser, then model" pipelines: each stain
normaliser, fitted once to a reference image, is applied to the (perturbed) tiles before the model, and its drop and
flips are counted against the same pipeline on the clean tiles, so the report answers whether normalisation buys
robustness; the clean metric of each pipeline shows what normalising costs or gains by itself.

Perturbations (``family``, ``strength``):

- ``hed``: :class:`eosin.stain.HEDJitter` with ``sigma = s`` and ``bias = s / 5`` (seeded; one draw per tile);
- ``stain``: stain transfer to a real target image with each normaliser (``strength`` = ``"<method>:<target>"``);
- ``jpeg``: JPEG compression at quality ``q`` (OpenCV);
- ``blur``: Gaussian blur of standard deviation ``s`` pixels (at the tiles' own resolution).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import UsageError

__all__ = ["evaluate_robustness", "perturb", "plot_robustness"]

DEFAULT_HED = (0.02, 0.05, 0.1, 0.2)
DEFAULT_JPEG = (90, 70, 50, 30, 10)
DEFAULT_BLUR = (0.5, 1.0, 2.0, 4.0)
METHODS = ("reinhard", "macenko", "vahadane")


def perturb(
    images: np.ndarray, family: str, strength: Any, *, seed: int = 0, target: Any = None
) -> np.ndarray:
    """``(n, rows, cols, 3)`` uint8 tiles perturbed by one ``family`` at ``strength`` (see the module docstring).

    For ``family="stain"``, ``strength`` is the normaliser's name and ``target`` the RGB target image (or a
    fitted normaliser).
    """
    import cv2

    images = np.asarray(images)
    if family == "hed":
        from eosin.stain import HEDJitter

        return HEDJitter(sigma=float(strength), bias=float(strength) / 5, seed=seed).transform(images)
    if family == "stain":
        norm = target if hasattr(target, "transform") else _fit(str(strength), target)
        return norm.transform(images)
    if family == "jpeg":
        out = np.empty_like(images)
        for i, image in enumerate(images):
            ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(strength)])
            out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        return out
    if family == "blur":
        sigma = float(strength)
        return np.stack([cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma) for image in images])
    raise UsageError(f"unknown perturbation {family!r}.", fix="use hed, stain, jpeg or blur")


def _fit(method: str, target: np.ndarray):
    from eosin.stain import get_normalizer

    return get_normalizer(method).fit(np.asarray(target))


def _classifier_fn(
    model: Any, *, batch_size: int, device: str
) -> tuple[Callable[[np.ndarray], np.ndarray], dict]:
    """A function uint8 tiles -> class probabilities for a TileClassifier, a checkpoint folder, or a callable."""
    if isinstance(model, (str, os.PathLike)):
        from eosin.train import load_classifier

        model = load_classifier(model, device="cpu" if device == "auto" else device)
    if not hasattr(model, "predict_proba") or not hasattr(model, "encoder"):
        if callable(model):
            return model, {"model": repr(model)}
        raise UsageError(
            "model must be a tile classifier, its checkpoint folder, or a function tiles -> proba."
        )
    import cv2
    import torch

    size = int(model.input_size)
    dev = next(model.parameters()).device
    mean = torch.tensor(model.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(model.std).view(1, 3, 1, 1) * 255
    model.eval()

    def predict(images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            if batch.shape[1:3] != (size, size):
                shrink = batch.shape[1] > size
                method = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
                batch = np.stack([cv2.resize(t, (size, size), interpolation=method) for t in batch])
            x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
            x = ((x - mean) / std).to(dev)
            out.append(model.predict_proba(x, "fp32").float().cpu().numpy())
        return np.concatenate(out)

    record = {
        "encoder": model.encoder.spec.name,
        "checkpoint": model.meta.get("checkpoint"),
        "encoder_weights": model.meta.get("initial_weights"),
        "classes": list(model.classes),
    }
    return predict, record


def _read_targets(targets: Any) -> dict[str, np.ndarray]:
    if targets is None:
        return {}
    if isinstance(targets, Mapping):
        return {str(k): np.asarray(v) for k, v in targets.items()}
    from eosin.data import read_tile

    out = {}
    for item in targets:
        path = Path(item)
        if not path.is_file():
            raise UsageError(f"stain target {path} is not a file.", fix="give RGB image files as targets")
        out[path.stem] = read_tile(str(path))
    return out


def evaluate_robustness(
    model: Any,
    images: np.ndarray,
    labels: Sequence[Any],
    *,
    classes: Sequence[str] | None = None,
    hed: Sequence[float] = DEFAULT_HED,
    targets: Any = None,
    transfer_methods: Sequence[str] = METHODS,
    jpeg: Sequence[int] = DEFAULT_JPEG,
    blur: Sequence[float] = DEFAULT_BLUR,
    normalizers: Sequence[str] = METHODS,
    reference: Any = None,
    metric: str = "balanced_accuracy",
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """Metric drop and prediction flips of ``model`` under stain and scanner perturbations, with bootstrap CIs.

    Parameters
    ----------
    model
        A :class:`eosin.train` tile classifier, its checkpoint folder, or a function ``(n, rows, cols, 3)`` uint8 ->
        ``(n, K)`` probabilities (columns in ``classes`` order).
    images, labels
        The test tiles ``(n, rows, cols, 3)`` uint8 and their true class names.
    classes
        Class names in the model's output order (a classifier knows its own).
    hed, jpeg, blur
        Strengths of HED jitter (sigma), JPEG qualities, Gaussian blur sigmas (pixels); empty to skip.
    targets
        Stain-transfer targets: image files, or ``{name: RGB array}``; each is reached with each of
        ``transfer_methods``.
    normalizers, reference
        Normalisers applied before the model (each its own pipeline, fitted to ``reference``: an RGB array or file,
        default the first target). Empty: only the model as it is.
    metric
        ``balanced_accuracy``, ``accuracy``, ``macro_f1`` or ``cohen_kappa``.
    n_bootstrap, ci, seed
        Paired class-stratified bootstrap of the tiles; the seed also drives the HED draws.

    Returns
    -------
    dict
        JSON-ready: ``metric``, ``n_tiles``, ``classes``, ``model``, ``pipelines`` (per pipeline its clean metric
        with CI), and ``conditions``: one record per pipeline, perturbation and strength with ``value`` (metric,
        ``ci``), ``drop`` (``ci``) and ``flip_rate`` (``ci``).
    """
    from eosin.evaluate._bootstrap import (
        bootstrap_weights,
        confusion_from_weights,
        metrics_from_confusion,
        percentile_ci,
    )

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise UsageError(f"images must be (n, rows, cols, 3) uint8, got {images.shape} {images.dtype}.")
    predict, record = _classifier_fn(model, batch_size=batch_size, device=device)
    classes = list(classes if classes is not None else record.get("classes") or sorted(set(labels)))
    labels = np.asarray([str(v) for v in labels])
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise UsageError(f"labels {unknown} are not among the model's classes {classes}.")
    if len(labels) != len(images):
        raise UsageError(f"{len(images)} images but {len(labels)} labels.")
    k = len(classes)
    y = (
        np.searchsorted(np.asarray(classes), labels)
        if classes == sorted(classes)
        else np.asarray([classes.index(v) for v in labels])
    )
    weights = np.concatenate(
        list(bootstrap_weights(y, n_bootstrap=n_bootstrap, rng=np.random.default_rng(seed)))
    )
    ones = np.ones((1, len(y)))

    def score(pred: np.ndarray, w: np.ndarray) -> np.ndarray:
        return metrics_from_confusion(confusion_from_weights(y, pred, w, k))[metric]

    def interval(values: np.ndarray) -> list[float]:
        lo, hi = percentile_ci(values[:, None], ci)
        return [float(lo[0]), float(hi[0])]

    target_images = _read_targets(targets)
    if isinstance(reference, (str, os.PathLike)):
        reference = _read_targets([reference]).popitem()[1]
    if reference is None and target_images:
        reference = next(iter(target_images.values()))
    if normalizers and reference is None:
        raise UsageError(
            "normalisers before the model need a reference image.", fix="give targets or reference"
        )
    pipelines: dict[str, Any] = {"none": None}
    pipelines.update({name: _fit(name, reference) for name in normalizers})
    conditions: list[tuple[str, Any, np.ndarray]] = []
    for s in hed:
        conditions.append(("hed", float(s), perturb(images, "hed", s, seed=seed)))
    for tname, timage in target_images.items():
        for method in transfer_methods:
            conditions.append(("stain", f"{method}:{tname}", perturb(images, "stain", method, target=timage)))
    for q in jpeg:
        conditions.append(("jpeg", int(q), perturb(images, "jpeg", q)))
    for s in blur:
        conditions.append(("blur", float(s), perturb(images, "blur", s)))

    from tqdm.auto import tqdm

    bar = tqdm(total=len(pipelines) * (1 + len(conditions)), disable=not progress, desc="robustness")
    out_pipes, out_conditions = {}, []
    for pname, norm in pipelines.items():
        run = (lambda x: predict(x)) if norm is None else (lambda x, n=norm: predict(n.transform(x)))
        clean = run(images).argmax(1)
        bar.update()
        clean_b = score(clean, weights)
        out_pipes[pname] = {"value": float(score(clean, ones)[0]), "ci": interval(clean_b)}
        for family, strength, perturbed in conditions:
            pred = run(perturbed).argmax(1)
            bar.update()
            value_b = score(pred, weights)
            flipped = (pred != clean).astype(np.float64)
            flips_b = weights @ flipped / weights.sum(1)
            out_conditions.append(
                {
                    "pipeline": pname,
                    "perturbation": family,
                    "strength": strength,
                    "value": float(score(pred, ones)[0]),
                    "ci": interval(value_b),
                    "drop": out_pipes[pname]["value"] - float(score(pred, ones)[0]),
                    "drop_ci": interval(clean_b - value_b),
                    "flip_rate": float(flipped.mean()),
                    "flip_rate_ci": interval(flips_b),
                }
            )
    bar.close()
    return {
        "metric": metric,
        "n_tiles": int(len(y)),
        "classes": classes,
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(classes)},
        "model": record,
        "ci": ci,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "hed_bias": "sigma / 5",
        "reference": None if not normalizers else "first target" if reference is None else "given",
        "targets": list(target_images),
        "pipelines": out_pipes,
        "conditions": out_conditions,
    }


def plot_robustness(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """One PNG: per perturbation family (columns), metric drop (top) and flip rate (bottom) against strength, one
    line per pipeline (model alone, each normaliser first), with the CIs as error bars."""
    from matplotlib.figure import Figure

    from eosin.evaluate._plots import save_figure

    families = [
        f
        for f in ("hed", "stain", "jpeg", "blur")
        if any(c["perturbation"] == f for c in report["conditions"])
    ]
    if not families:
        raise UsageError("the report has no perturbation to plot.")
    pipes = list(report["pipelines"])
    fig = Figure(figsize=(4.2 * len(families), 6.4), layout="constrained")
    axes = fig.subplots(2, len(families), squeeze=False)
    titles = {
        "hed": "HED jitter (sigma)",
        "stain": "stain transfer (method:target)",
        "jpeg": "JPEG quality",
        "blur": "Gaussian blur (sigma, px)",
    }
    for col, family in enumerate(families):
        strengths = list(
            dict.fromkeys(c["strength"] for c in report["conditions"] if c["perturbation"] == family)
        )
        xs = np.arange(len(strengths))
        for j, pipe in enumerate(pipes):
            rows = {
                c["strength"]: c
                for c in report["conditions"]
                if c["perturbation"] == family and c["pipeline"] == pipe
            }
            offset = (j - (len(pipes) - 1) / 2) * 0.08
            for row, (key, lo_hi) in enumerate((("drop", "drop_ci"), ("flip_rate", "flip_rate_ci"))):
                values = np.array([rows[s][key] for s in strengths])
                lo = values - np.array([rows[s][lo_hi][0] for s in strengths])
                hi = np.array([rows[s][lo_hi][1] for s in strengths]) - values
                axes[row, col].errorbar(
                    xs + offset,
                    values,
                    yerr=[np.maximum(lo, 0), np.maximum(hi, 0)],
                    marker="o",
                    ms=3,
                    capsize=2,
                    lw=1,
                    label="model alone" if pipe == "none" else f"{pipe} first",
                )
        for row, name in enumerate((f"{report['metric']} drop", "prediction flip rate")):
            ax = axes[row, col]
            ax.set_xticks(
                xs,
                [str(s) for s in strengths],
                rotation=45 if family == "stain" else 0,
                ha="right" if family == "stain" else "center",
                fontsize=7,
            )
            ax.axhline(0, c="grey", lw=0.6)
            ax.set_ylabel(name)
            if row == 0:
                ax.set_title(titles[family], fontsize=10)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(
        f"robustness: {report['n_tiles']} tiles, {100 * report['ci']:.0f}% bootstrap CIs", fontsize=10
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)

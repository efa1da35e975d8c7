"""Figures of a classification report: ROC and PR curves, confusion matrices, calibration (matplotlib, Agg)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from eosin.evaluate._classification import ClassificationReport

__all__ = ["plot_roc", "plot_pr", "plot_confusion", "plot_calibration", "save_figure"]


def _pyplot():
    """matplotlib's Figure class: drawn by the Agg canvas on save, without pyplot or a global backend switch."""
    from matplotlib.figure import Figure

    return Figure


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` as PNG atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=110)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _fmt(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{x:.3f}"


def _curve_classes(report: ClassificationReport) -> list[int]:
    """Classes to draw curves for: the positive class for binary problems, every class otherwise."""
    return [1] if len(report.classes) == 2 else list(range(len(report.classes)))


def plot_roc(report: ClassificationReport, path: Path) -> Path:
    """Per-class one-vs-rest ROC curves with AUC and its CI in the legend."""
    from sklearn.metrics import roc_curve

    fig = _pyplot()(figsize=(6.2, 5.6))
    ax = fig.add_subplot()
    for j in _curve_classes(report):
        c = report.classes[j]
        pos = report.y_true == j
        if not pos.any() or pos.all():
            continue
        fpr, tpr, _ = roc_curve(pos, report.proba[:, j])
        m = report.metrics[f"roc_auc[{c}]"]
        ax.plot(fpr, tpr, lw=1.6, label=f"{c}: AUC {_fmt(m.value)} [{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="chance")
    ax.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        xlabel="false positive rate (1 - specificity)",
        ylabel="true positive rate (sensitivity)",
        aspect="equal",
    )
    ax.set_title(f"ROC ({report.level} level, n={report.counts['n']})")
    ax.legend(loc="lower right", fontsize=7.5, framealpha=0.9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_pr(report: ClassificationReport, path: Path) -> Path:
    """Per-class precision-recall curves with average precision in the legend; dotted lines mark prevalence."""
    from sklearn.metrics import precision_recall_curve

    fig = _pyplot()(figsize=(6.2, 5.6))
    ax = fig.add_subplot()
    for j in _curve_classes(report):
        c = report.classes[j]
        pos = report.y_true == j
        if not pos.any():
            continue
        precision, recall, _ = precision_recall_curve(pos, report.proba[:, j])
        m = report.metrics[f"pr_auc[{c}]"]
        (line,) = ax.step(
            recall,
            precision,
            where="post",
            lw=1.6,
            label=f"{c}: AP {_fmt(m.value)} [{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]",
        )
        ax.axhline(pos.mean(), ls=":", lw=0.8, c=line.get_color())
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="recall (sensitivity)", ylabel="precision (PPV)")
    ax.set_title(f"Precision-recall ({report.level} level; dotted: prevalence)")
    ax.legend(loc="lower left", fontsize=7.5, framealpha=0.9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion(report: ClassificationReport, path: Path) -> Path:
    """Confusion matrix as counts and row-normalised (recall per true class), side by side."""
    cm = np.asarray(report.confusion_matrix)
    k = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    size = max(4.0, 0.55 * k + 2.5)
    fig = _pyplot()(figsize=(2 * size + 0.5, size))
    for i, (data, title, fmt) in enumerate(
        ((cm, "counts", lambda v: f"{int(v)}"), (norm, "row-normalised (recall)", lambda v: f"{v:.2f}"))
    ):
        ax = fig.add_subplot(1, 2, i + 1)
        scale = norm if i == 1 else (cm / max(cm.max(), 1))
        ax.imshow(scale, cmap="Blues", vmin=0, vmax=1)
        for r in range(k):
            for c in range(k):
                ax.text(
                    c,
                    r,
                    fmt(data[r, c]),
                    ha="center",
                    va="center",
                    fontsize=8 if k <= 8 else 6,
                    color="white" if scale[r, c] > 0.6 else "black",
                )
        ax.set_xticks(range(k), report.classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), report.classes, fontsize=8)
        ax.set(xlabel="predicted", ylabel="true")
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"Confusion matrix ({report.level} level, n={report.counts['n']})", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def calibration_data(report: ClassificationReport, *, bins: int = 10) -> dict[str, np.ndarray | float | str]:
    """Reliability-diagram data: for two classes, P(positive) against the positive frequency; for more, the
    top-class confidence against accuracy. Equal-width bins; ``ece`` is the expected calibration error."""
    if len(report.classes) == 2:
        score = report.proba[:, 1]
        hit = (report.y_true == 1).astype(float)
        what = f"P({report.classes[1]})"
    else:
        score = report.proba.max(axis=1)
        hit = (report.proba.argmax(axis=1) == report.y_true).astype(float)
        what = "confidence (top-class probability)"
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(score, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(float)
    mean_score = np.divide(np.bincount(which, score, bins), count, out=np.full(bins, np.nan), where=count > 0)
    frequency = np.divide(np.bincount(which, hit, bins), count, out=np.full(bins, np.nan), where=count > 0)
    filled = count > 0
    ece = float(np.sum(count[filled] * np.abs(mean_score[filled] - frequency[filled])) / count.sum())
    return {
        "edges": edges,
        "count": count,
        "mean_score": mean_score,
        "frequency": frequency,
        "ece": ece,
        "what": what,
    }


def plot_calibration(report: ClassificationReport, path: Path, *, bins: int = 10) -> Path:
    """Reliability diagram over a histogram of the scores."""
    d = calibration_data(report, bins=bins)
    fig = _pyplot()(figsize=(5.8, 6.4))
    ax, hx = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centers = (d["edges"][:-1] + d["edges"][1:]) / 2
    width = d["edges"][1] - d["edges"][0]
    ax.bar(
        centers,
        np.nan_to_num(d["frequency"]),
        width=width * 0.9,
        color="#8fb3d9",
        edgecolor="#3a6ea5",
        label="observed frequency",
    )
    ax.plot(d["mean_score"], d["frequency"], "o-", c="#1f3f66", ms=4, label="per bin: mean score vs observed")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="perfect calibration")
    ax.set(ylim=(0, 1.02), ylabel="observed frequency" if len(report.classes) == 2 else "accuracy")
    ax.set_title(f"Calibration ({report.level} level), ECE {d['ece']:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    hx.bar(centers, d["count"], width=width * 0.9, color="#bbbbbb", edgecolor="#666666")
    hx.set(xlim=(0, 1), xlabel=str(d["what"]), ylabel="samples")
    fig.tight_layout()
    return save_figure(fig, path)

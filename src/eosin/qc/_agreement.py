"""Agreement of a detected artefact mask with a hand-drawn one, with Foucart's pixel metrics."""

from __future__ import annotations

import numpy as np

__all__ = ["mask_agreement"]


def mask_agreement(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pixel accuracy, TPR (sensitivity), TNR (specificity), NPV and Dice of ``pred`` against ``truth``.

    Artefacts cover a few percent of a slide, so accuracy is dominated by the negatives; TPR and NPV say whether
    the artefact is found and whether what is kept is clean (Foucart et al., the metrics of artefact QC).

    Parameters
    ----------
    pred, truth
        Boolean masks of the same ``(rows, cols)`` shape.

    Returns
    -------
    dict
        ``accuracy``, ``tpr``, ``tnr``, ``npv``, ``dice`` (``nan`` where a denominator is 0), and ``positives``
        (fraction of truth pixels that are artefact).
    """
    p = np.asarray(pred, bool).ravel()
    t = np.asarray(truth, bool).ravel()
    if p.shape != t.shape:
        raise ValueError(f"masks differ in shape: {np.shape(pred)} vs {np.shape(truth)}")
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    tn = int(p.size - tp - fp - fn)

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "accuracy": ratio(tp + tn, p.size),
        "tpr": ratio(tp, tp + fn),
        "tnr": ratio(tn, tn + fp),
        "npv": ratio(tn, tn + fn),
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "positives": ratio(tp + fn, p.size),
    }

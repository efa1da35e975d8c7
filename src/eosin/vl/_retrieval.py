"""Retrieval scored as the PLIP paper scores it: Recall@K, the share of queries with at least one tile of the
query's class among the K nearest, for text-to-image (each prompt of a class is one query) and image-to-image
(each labelled tile is one query; the tile itself is left out of its own results), with bootstrap CIs over
queries (stratified by class).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eosin.errors import DataError

__all__ = ["evaluate_retrieval", "recall_at_k"]

DEFAULT_KS = (1, 5, 10, 50)


def recall_at_k(
    query_labels: Sequence[str],
    retrieved_labels: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Recall@K for each K: ``{"R@K": {"value", "ci_low", "ci_high"}}``.

    Parameters
    ----------
    query_labels
        ``(q,)`` class of each query.
    retrieved_labels
        ``(q, m)`` classes of each query's results, best first (``m >= max(ks)``; pad with ``""`` where a query has
        fewer results).
    """
    q = np.asarray(query_labels, dtype=str)
    got = np.asarray(retrieved_labels, dtype=str).reshape(len(q), -1)
    if len(q) == 0:
        raise DataError("no queries to score.", fix="give labelled tiles and prompts for their classes")
    match = got == q[:, None]
    first = np.where(match.any(axis=1), match.argmax(axis=1), np.iinfo(np.int64).max)
    rng = np.random.default_rng(seed)
    classes, codes = np.unique(q, return_inverse=True)
    members = [np.flatnonzero(codes == c) for c in range(len(classes))]
    draws = np.concatenate([rng.choice(m, size=(n_bootstrap, len(m)), replace=True) for m in members], axis=1)
    out = {}
    for k in ks:
        hit = (first < k).astype(np.float64)
        reps = hit[draws].mean(axis=1)
        lo, hi = np.quantile(reps, [(1 - ci) / 2, 1 - (1 - ci) / 2])
        out[f"R@{k}"] = {"value": float(hit.mean()), "ci_low": float(lo), "ci_high": float(hi)}
    return out


def evaluate_retrieval(
    index: Any,
    prompts: Mapping[str, list[str]] | str | os.PathLike[str] | None = None,
    *,
    model: Any = None,
    ks: Sequence[int] = DEFAULT_KS,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Text-to-image (when ``prompts`` are given) and image-to-image Recall@K of a labelled index.

    Chance levels are reported beside each value: the Recall@K of a random ranking (the probability that K tiles
    drawn without replacement include one of the query's class), averaged over the queries.
    """
    from eosin.vl._index import check_model, index_model, load_index
    from eosin.vl._models import load_vl_model
    from eosin.vl._prompts import load_prompts

    if not hasattr(index, "query"):
        index = load_index(index)
    labels = np.asarray(index.columns["labels"], dtype=str)
    labelled = np.flatnonzero(labels != "")
    if len(labelled) < 2:
        raise DataError(
            "the index holds fewer than two labelled tiles; retrieval needs the class of each tile.",
            fix="index labelled tile folders (one sub-folder per class, or CLASS-... file names)",
        )
    kmax = max(ks)
    result: dict[str, Any] = {
        "n_tiles": int(len(labelled)),
        "classes": sorted(set(labels[labelled].tolist())),
    }
    # image -> image among the labelled tiles, the query left out
    from eosin.vl._index import build_index

    sub = build_index(index.vectors[labelled], {"labels": labels[labelled]})
    _, rows = sub.query(sub.vectors, kmax, exclude_self=True)
    got = np.where(rows >= 0, labels[labelled][np.maximum(rows, 0)], "")
    result["image_to_image"] = recall_at_k(labels[labelled], got, ks, n_bootstrap=n_bootstrap, seed=seed)
    result["image_to_image"]["chance"] = _chance(labels[labelled], labels[labelled], ks, exclude_self=True)
    if prompts is not None:
        prompts = load_prompts(prompts) if not isinstance(prompts, Mapping) else prompts
        model = load_vl_model(model if model is not None else index_model(index))
        check_model(index, model)
        texts = [(c, p) for c, ps in prompts.items() for p in ps if c in set(result["classes"])]
        if not texts:
            raise DataError(
                f"no prompt class matches the index's labels {result['classes']}.",
                fix="name the prompt file's classes as the tile folders are named",
            )
        q = model.encode_text([p for _, p in texts])
        _, rows = sub.query(q, kmax)
        got = np.where(rows >= 0, labels[labelled][np.maximum(rows, 0)], "")
        qlab = [c for c, _ in texts]
        result["text_to_image"] = recall_at_k(qlab, got, ks, n_bootstrap=n_bootstrap, seed=seed)
        result["text_to_image"]["chance"] = _chance(qlab, labels[labelled], ks)
        result["n_text_queries"] = len(texts)
    result["model"] = index.meta.get("model")
    result["weights_id"] = index.meta.get("weights_id")
    return result


def _chance(query_labels, pool_labels, ks, *, exclude_self: bool = False) -> dict[str, float]:
    """Recall@K of a random ranking: 1 - C(n - m, K) / C(n, K) for m tiles of the class among n, per query."""
    from math import comb

    pool = np.asarray(pool_labels, dtype=str)
    out = {}
    for k in ks:
        vals = []
        for c in query_labels:
            n = len(pool) - (1 if exclude_self else 0)
            m = int((pool == c).sum()) - (1 if exclude_self else 0)
            kk = min(k, n)
            vals.append(1.0 - comb(n - m, kk) / comb(n, kk) if n > 0 else 0.0)
        out[f"R@{k}"] = float(np.mean(vals))
    return out

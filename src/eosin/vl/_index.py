"""A searchable index of tile embeddings with their provenance, in one file written atomically.

Search is FAISS inner product on unit vectors (= cosine): exact (``IndexFlatIP``) up to :data:`EXACT_MAX`
vectors; above, a 4-bit product-quantized fast scan (``IndexPQFastScan``, one sub-quantizer per two dimensions)
picks :data:`RERANK` x k candidates and their exact scores from the stored vectors rank them. Both are rebuilt
from the stored vectors on load (seconds for a million). docs/vision-language.md gives the measurements behind the
choice (HNSW graphs needed minutes to build and still missed neighbours of unclustered vectors).

The file (``.npz``, no pickles) holds ``vectors`` (n, d) float16, the provenance columns ``ids``, ``labels``,
``slides``, ``stores``, ``x``, ``y``, ``size``, ``mpp``, ``grid_index``, and ``meta``: JSON naming the model,
its weights digest, the dimension and what made the index.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import DataError, UsageError

__all__ = ["EXACT_MAX", "TileIndex", "build_index", "index_model", "index_sources", "load_index", "search"]

#: above this many vectors the index scans 4-bit codes and re-ranks candidates instead of scanning every vector
EXACT_MAX = 50_000
#: candidates the quantized scan passes to the exact re-ranking, per result asked for
RERANK = 40
_TRAIN_ROWS = 100_000
_THREADS: int | None = None  # FAISS's own thread count, restored after single-query searches
_COLUMNS = ("ids", "labels", "slides", "stores", "x", "y", "size", "mpp", "grid_index")


@dataclass
class TileIndex:
    """Unit embeddings ``vectors`` (n, d) with per-row provenance ``columns`` and ``meta`` (model, weights_id...)."""

    vectors: np.ndarray
    columns: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    _searcher: Any = None

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def method(self) -> str:
        """How this index searches: ``exact`` or ``pq-fastscan+rerank`` (chosen by size, see the module)."""
        return "exact" if len(self) <= EXACT_MAX or self.dim % 2 else "pq-fastscan+rerank"

    def _index(self):
        if self._searcher is None:
            import faiss

            x = np.ascontiguousarray(self.vectors, dtype=np.float32)
            if self.method == "exact":
                index = faiss.IndexFlatIP(self.dim)
            else:
                index = faiss.IndexPQFastScan(self.dim, self.dim // 2, 4, faiss.METRIC_INNER_PRODUCT)
                rows = np.random.default_rng(0).choice(len(x), min(len(x), _TRAIN_ROWS), replace=False)
                index.train(x[np.sort(rows)])
            index.add(x)
            self._searcher = index
        return self._searcher

    def query(
        self, vectors: np.ndarray, k: int = 10, *, exclude_self: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows for each query: ``(scores, rows)``, both ``(q, k)``; rows are -1 where fewer exist.

        ``exclude_self``: the queries are rows ``0..q-1`` of the index itself (image-to-image evaluation), and each
        query's own row is left out of its results.
        """
        q = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise UsageError(
                f"query vectors have dimension {q.shape[1]}, the index {self.dim} (built with "
                f"{self.meta.get('model')!r}).",
                fix=f"query with the model the index was built with ({self.meta.get('model')})",
            )
        if len(self) == 0:
            raise DataError("the index is empty.", fix="build it from stores or tiles that hold tiles")
        kk = min(len(self), k + (1 if exclude_self else 0))
        import faiss

        global _THREADS
        if _THREADS is None:
            _THREADS = faiss.omp_get_max_threads()
        # a few queries: OpenMP start-up costs more than it saves (5.9 vs 56 ms at 20k vectors, 2 CPUs)
        faiss.omp_set_num_threads(1 if len(q) < 8 else _THREADS)
        if self.method == "exact":
            scores, rows = self._index().search(q, kk)
        else:
            scores, rows = self._rerank(q, self._index().search(q, min(len(self), RERANK * kk))[1], kk)
        if exclude_self:
            own = np.arange(len(q))[:, None]
            keep = rows != own
            scores = np.stack([s[m][:k] for s, m in zip(scores, keep)]) if len(q) else scores[:, :k]
            rows = np.stack([r[m][:k] for r, m in zip(rows, keep)]) if len(q) else rows[:, :k]
        return scores[:, :k], rows[:, :k]

    def _rerank(self, q: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best of each query's ``candidates`` rows by their exact inner product."""
        scores = np.full((len(q), k), -np.inf, np.float32)
        rows = np.full((len(q), k), -1, np.int64)
        for i, (v, cand) in enumerate(zip(q, candidates)):
            cand = cand[cand >= 0]
            exact = self.vectors[cand] @ v
            best = np.argsort(-exact, kind="stable")[:k]
            scores[i, : len(best)], rows[i, : len(best)] = exact[best], cand[best]
        return scores, rows

    def record(self, row: int, score: float, rank: int) -> dict[str, Any]:
        """One hit as a JSON-ready dict: rank, score and the tile's provenance."""
        out: dict[str, Any] = {"rank": rank, "score": round(float(score), 6)}
        for name in _COLUMNS:
            value = self.columns[name][row]
            out[name.rstrip("s") if name in ("ids", "labels", "slides", "stores") else name] = (
                value.item() if hasattr(value, "item") else value
            )
        if isinstance(out.get("mpp"), float) and np.isnan(out["mpp"]):
            out["mpp"] = None
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to one ``.npz`` file atomically (a crash leaves the old file or none)."""
        from eosin.io import atomic_path

        path = Path(path)
        if path.suffix != ".npz":
            raise UsageError(
                f"an index file ends in .npz, not {path.suffix or 'nothing'}.",
                path=path,
                fix="name it INDEX.npz",
            )
        arrays = {
            "vectors": self.vectors.astype(np.float16),
            **{k: np.asarray(v) for k, v in self.columns.items()},
        }
        arrays["meta"] = np.asarray(json.dumps({**self.meta, "n": len(self), "dim": self.dim}))
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return path


def build_index(
    embeddings: np.ndarray,
    provenance: Mapping[str, Sequence[Any]] | None = None,
    *,
    meta: Mapping[str, Any] | None = None,
) -> TileIndex:
    """An index over unit ``embeddings`` (n, d); ``provenance`` gives any of the columns ``ids``, ``labels``,
    ``slides``, ``stores``, ``x``, ``y``, ``size``, ``mpp``, ``grid_index`` (missing ones are filled)."""
    vectors = np.asarray(embeddings, np.float32)
    if vectors.ndim != 2:
        raise UsageError(f"embeddings must be (n, d), not shape {vectors.shape}.")
    n = len(vectors)
    given = dict(provenance or {})
    cols: dict[str, np.ndarray] = {}
    defaults = {
        "ids": np.arange(n).astype(str),
        "labels": np.full(n, ""),
        "slides": np.full(n, ""),
        "stores": np.full(n, ""),
        "x": np.zeros(n, np.int64),
        "y": np.zeros(n, np.int64),
        "size": np.zeros(n, np.int64),
        "mpp": np.full(n, np.nan),
        "grid_index": np.full(n, -1, np.int64),
    }
    for name, default in defaults.items():
        value = np.asarray(given.get(name, default))
        if len(value) != n:
            raise UsageError(f"provenance column {name!r} has {len(value)} rows, the embeddings {n}.")
        cols[name] = value.astype(default.dtype) if default.dtype.kind != "U" else value.astype(str)
    return TileIndex(vectors, cols, dict(meta or {}))


def load_index(path: str | os.PathLike[str]) -> TileIndex:
    """Read an index file written by :meth:`TileIndex.save` (no pickles are loaded)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such index file.", path=path, fix="build it with eosin index ... --out INDEX.npz")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            vectors = data["vectors"].astype(np.float32)
            columns = {k: data[k] for k in _COLUMNS}
    except (ValueError, KeyError, OSError) as exc:
        raise DataError(
            f"not an eosin index file ({exc}).", path=path, fix="build it with eosin index"
        ) from exc
    return TileIndex(vectors, columns, meta)


def search(
    index: TileIndex | str | os.PathLike[str],
    *,
    text: str | Sequence[str] | None = None,
    image: np.ndarray | str | os.PathLike[str] | None = None,
    model: Any = None,
    k: int = 10,
) -> list[dict[str, Any]]:
    """The ``k`` tiles of ``index`` nearest to a text (its prompts averaged as one ensemble) or to an image.

    ``model`` defaults to the model the index was built with (by name); a model with another name or another
    weights digest is refused, since its embeddings live in another space.
    """
    from eosin.vl._models import load_vl_model

    if not isinstance(index, TileIndex):
        index = load_index(index)
    if (text is None) == (image is None):
        raise UsageError(
            "search needs one query: a text or an image.", fix="give --text or --image, not both"
        )
    model = load_vl_model(model if model is not None else index_model(index))
    check_model(index, model)
    if text is not None:
        from eosin.vl._prompts import class_embeddings

        q = class_embeddings(model, {"query": [text] if isinstance(text, str) else list(text)})
    else:
        from eosin.vl._sources import read_image

        tile = read_image(image) if not isinstance(image, np.ndarray) else image
        q = model.encode_images(tile[None] if tile.ndim == 3 else tile)
    scores, rows = index.query(q, k)
    return [index.record(int(r), s, i + 1) for i, (s, r) in enumerate(zip(scores[0], rows[0])) if r >= 0]


def index_model(index: TileIndex) -> str:
    """The model an index was built with: its folder for a trained local model, else its registry name."""
    return index.meta.get("source") or index.meta.get("model")


def check_model(index: TileIndex, model: Any) -> None:
    """Refuse a model other than the one the index was built with (name, weights or dimension differ)."""
    want, wid = index.meta.get("model"), index.meta.get("weights_id")
    if model.embedding_dim != index.dim or (want and model.name != want) or (wid and model.weights_id != wid):
        raise UsageError(
            f"the index was built with {want!r} (weights {wid}, dimension {index.dim}); the query model is "
            f"{model.name!r} (weights {model.weights_id}, dimension {model.embedding_dim}): their embeddings are "
            "not comparable.",
            fix=f"query with --model {want} and its weights, or rebuild the index with this model",
        )


def index_sources(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    model: Any,
    out: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    grid_key: str | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> TileIndex:
    """Embed every tile of the inputs (stores, tile folders, images) and index them; save to ``out`` if given."""
    from eosin.vl._models import load_vl_model
    from eosin.vl._sources import iter_sources

    model = load_vl_model(model)
    vectors, cols = [], {k: [] for k in _COLUMNS}
    for chunk in iter_sources(
        inputs,
        input_size=model.input_size,
        native_mpp=model.native_mpp,
        batch_size=batch_size,
        grid_key=grid_key,
        workers=workers,
        progress=progress,
    ):
        vectors.append(model.encode_images(chunk.images, batch_size=batch_size))
        for name in _COLUMNS:
            if name == "stores":
                cols[name].append(np.full(len(chunk.ids), chunk.store or ""))
            else:
                cols[name].append(getattr(chunk, name))
    if not vectors:
        raise DataError(
            "the inputs hold no tiles: nothing to index.", fix="give stores with tiles or tile folders"
        )
    index = build_index(
        np.concatenate(vectors),
        {k: np.concatenate(v) for k, v in cols.items()},
        meta={**model.describe(), "inputs": [str(p) for p in inputs], "search": "faiss"},
    )
    if out is not None:
        index.save(out)
    return index

"""Tile tables: which image (or which box of an image) carries which label, from which patient."""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eosin.errors import DataError, UsageError

__all__ = ["IMAGE_SUFFIXES", "TileTable", "load_tile_table", "read_tile"]

IMAGE_SUFFIXES = frozenset([".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"])


@dataclass(frozen=True)
class TileTable:
    """Labelled tiles, one row each.

    Attributes
    ----------
    paths
        ``(n,)`` str image files.
    labels
        ``(n,)`` str class of each tile.
    patients
        ``(n,)`` str patient (or source image) of each tile: the unit that must not straddle a split.
    classes
        Class names, sorted; ``label_index`` maps rows to positions in it.
    boxes
        ``(n, 4)`` int ``x, y, width, height`` of the tile inside its image, or None when tiles are whole files.
    extra
        Other per-row columns by name (e.g. ``fraction`` for mask-derived tiles).
    """

    paths: np.ndarray
    labels: np.ndarray
    patients: np.ndarray
    classes: tuple[str, ...]
    boxes: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.paths.size)

    @property
    def label_index(self) -> np.ndarray:
        """``(n,)`` int64 position of each label in ``classes``."""
        return np.searchsorted(np.asarray(self.classes), self.labels).astype(np.int64)

    def counts(self) -> dict[str, int]:
        """Tiles per class."""
        return {c: int((self.labels == c).sum()) for c in self.classes}

    def subset(self, indices: np.ndarray) -> TileTable:
        """The rows at ``indices`` (classes kept, so label indices stay comparable)."""
        idx = np.asarray(indices, dtype=np.int64)
        return TileTable(
            self.paths[idx],
            self.labels[idx],
            self.patients[idx],
            self.classes,
            None if self.boxes is None else self.boxes[idx],
            {k: v[idx] for k, v in self.extra.items()},
        )

    @classmethod
    def from_rows(
        cls,
        paths,
        labels,
        patients=None,
        *,
        boxes=None,
        classes=None,
        extra: dict[str, np.ndarray] | None = None,
    ) -> TileTable:
        """Build a table from columns; without ``patients`` every distinct file is its own patient."""
        paths = np.asarray([str(p) for p in paths], dtype=str)
        labels = np.asarray([str(v) for v in labels], dtype=str)
        patients = paths.copy() if patients is None else np.asarray([str(p) for p in patients], dtype=str)
        if not (len(paths) == len(labels) == len(patients)):
            raise UsageError("paths, labels and patients must have the same length.")
        found = tuple(sorted(set(labels.tolist())))
        classes = tuple(sorted(classes)) if classes is not None else found
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise UsageError(f"labels {unknown} are not among the classes {list(classes)}.")
        if boxes is not None:
            boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        return cls(paths, labels, patients, classes, boxes, dict(extra or {}))

    def concat(self, other: TileTable) -> TileTable:
        """Rows of both tables (whole-file and boxed tiles can mix: whole files get a box of -1s)."""

        def boxes(t: TileTable) -> np.ndarray:
            return t.boxes if t.boxes is not None else np.full((len(t), 4), -1, dtype=np.int64)

        keep_boxes = self.boxes is not None or other.boxes is not None
        return TileTable.from_rows(
            np.concatenate([self.paths, other.paths]),
            np.concatenate([self.labels, other.labels]),
            np.concatenate([self.patients, other.patients]),
            boxes=np.concatenate([boxes(self), boxes(other)]) if keep_boxes else None,
            classes=sorted(set(self.classes) | set(other.classes)),
        )


def load_tile_table(
    source: str | os.PathLike[str],
    *,
    label_from: str = "auto",
    patient_column: str = "patient",
) -> TileTable:
    """Read labelled tiles from a folder or a CSV.

    Parameters
    ----------
    source
        A folder with one sub-folder per class (``label_from="folder"``), a folder of files named
        ``<CLASS>-<rest>`` (``label_from="prefix"``, as the NCT-CRC-HE tiles are), or a CSV with columns ``path``,
        ``label`` and optionally a patient column (relative paths are relative to the CSV's folder).
    label_from
        ``"auto"`` (CSV for a file; sub-folders when the folder has any, else file-name prefixes), ``"folder"``,
        ``"prefix"`` or ``"csv"``.
    patient_column
        CSV column holding patient ids; without it every file is its own patient.

    Raises
    ------
    DataError
        The source is missing or empty, a CSV lacks a column, names a missing file or has an empty label (the
        message names the row).
    """
    source = Path(source)
    if not source.exists():
        raise DataError("no such file or folder.", path=source, fix="check the path")
    if label_from == "auto":
        if source.is_file():
            label_from = "csv"
        else:
            label_from = "folder" if any(p.is_dir() for p in source.iterdir()) else "prefix"
    if label_from == "csv":
        return _from_csv(source, patient_column)
    if label_from not in ("folder", "prefix"):
        raise UsageError(f"label_from must be auto, folder, prefix or csv, not {label_from!r}.")
    if label_from == "folder":
        files = [
            (f, d.name)
            for d in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
            for f in _images(d)
        ]
    else:
        files = [(f, f.name.split("-", 1)[0]) for f in _images(source) if "-" in f.name]
    if not files:
        raise DataError(
            f"no labelled image files found (label_from={label_from!r}).",
            path=source,
            fix="use one sub-folder per class, files named CLASS-..., or a CSV of path,label",
        )
    return TileTable.from_rows([f for f, _ in files], [label for _, label in files])


def _images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _from_csv(path: Path, patient_column: str) -> TileTable:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in ("path", "label") if c not in columns]
        if missing:
            raise DataError(
                f"missing column(s) {missing}; columns seen: {columns}.",
                path=path,
                fix="name the columns path,label[,patient]",
            )
        paths, labels, patients = [], [], []
        has_patient = patient_column in columns
        for row_number, row in enumerate(reader, start=2):
            file = Path(row["path"])
            file = file if file.is_absolute() else path.parent / file
            if not file.is_file():
                raise DataError(f"row {row_number}: image {row['path']!r} does not exist.", path=path)
            if not (row["label"] or "").strip():
                raise DataError(f"row {row_number}: empty label.", path=path)
            paths.append(file)
            labels.append(row["label"].strip())
            patients.append((row[patient_column] or "").strip() or str(file) if has_patient else str(file))
    if not paths:
        raise DataError("the CSV has no rows.", path=path)
    return TileTable.from_rows(paths, labels, patients)


def read_tile(path: str, box=None) -> np.ndarray:
    """Decode one tile as ``(rows, cols, 3)`` RGB uint8: the whole file, or the ``x, y, w, h`` box of it.

    Boxed tiles come from large images: the last two images decoded are kept (per process), so the tiles of one
    image in a row decode it once.
    """
    if box is not None and box[0] >= 0:
        x, y, w, h = (int(v) for v in box)
        return np.ascontiguousarray(_decode_cached(str(path))[y : y + h, x : x + w])
    return _decode(str(path))


@functools.lru_cache(maxsize=2)
def _decode_cached(path: str) -> np.ndarray:
    return _decode(path)


def _decode(path: str) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:  # formats OpenCV cannot read (some TIFFs): Pillow
        from PIL import Image

        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except OSError as exc:
            raise DataError(f"cannot decode the image ({exc}).", path=path) from None
    else:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb)

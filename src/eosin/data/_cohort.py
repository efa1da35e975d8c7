"""Cohorts: which slide belongs to which patient and carries which label (and, optionally, which split)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eosin.errors import DataError

__all__ = ["COHORT_COLUMNS", "Cohort", "read_cohort"]

#: required columns, then optional ones
COHORT_COLUMNS = ("path", "slide_id", "patient_id", "label")
OPTIONAL_COLUMNS = ("split",)
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Cohort:
    """Slides with their patient and label, one row each (columns as ``(n,)`` str arrays).

    ``split`` holds ``train``/``val``/``test`` per slide when the CSV had a split column, else None.
    """

    paths: np.ndarray
    slide_ids: np.ndarray
    patient_ids: np.ndarray
    labels: np.ndarray
    split: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.paths.size)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.labels.tolist())))


def read_cohort(path: str | os.PathLike[str], *, check_files: bool = True) -> Cohort:
    """Read and validate a cohort CSV with columns ``path, slide_id, patient_id, label[, split]``.

    Relative slide paths are relative to the CSV's folder. A patient's slides may carry different labels (slide
    level), but a patient may not be in two splits.

    Raises
    ------
    DataError
        Missing or unknown columns, an empty cell, a repeated slide_id, a slide file that does not exist
        (``check_files``), a split value other than train/val/test, or a patient in two splits; the message names
        the row and the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such cohort file.", path=path, fix="check the path")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in COHORT_COLUMNS if c not in columns]
        unknown = [c for c in columns if c not in COHORT_COLUMNS + OPTIONAL_COLUMNS]
        if missing or unknown:
            raise DataError(
                (f"missing column(s) {missing}. " if missing else "")
                + (f"unknown column(s) {unknown}. " if unknown else "")
                + f"Columns seen: {columns}.",
                path=path,
                fix="use the columns path,slide_id,patient_id,label and optionally split",
            )
        rows = [{k.strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if not rows:
        raise DataError("the cohort has no rows.", path=path)
    seen: dict[str, int] = {}
    patient_split: dict[str, tuple[str, int]] = {}
    has_split = "split" in columns
    for number, row in enumerate(rows, start=2):
        for column in COHORT_COLUMNS:
            if not row[column]:
                raise DataError(f"row {number}: empty {column}.", path=path)
        file = Path(row["path"])
        row["path"] = str(file if file.is_absolute() else path.parent / file)
        if check_files and not Path(row["path"]).exists():
            raise DataError(
                f"row {number} (slide {row['slide_id']}): slide file {row['path']} does not exist.",
                path=path,
                fix="correct the path (relative paths are relative to the CSV's folder)",
            )
        if row["slide_id"] in seen:
            raise DataError(
                f"row {number}: slide_id {row['slide_id']!r} repeats row {seen[row['slide_id']]}.", path=path
            )
        seen[row["slide_id"]] = number
        if has_split:
            if row["split"] not in SPLITS:
                raise DataError(
                    f"row {number}: split {row['split']!r} is not one of {list(SPLITS)}.", path=path
                )
            earlier = patient_split.setdefault(row["patient_id"], (row["split"], number))
            if earlier[0] != row["split"]:
                from eosin.errors import PatientLeakError

                raise PatientLeakError(
                    f"row {number}: patient {row['patient_id']!r} is in {row['split']!r} but row {earlier[1]} "
                    f"puts them in {earlier[0]!r}.",
                    path=path,
                    fix="put all of a patient's slides in one split",
                )

    def col(name: str) -> np.ndarray:
        return np.asarray([r[name] for r in rows], dtype=str)

    return Cohort(
        col("path"), col("slide_id"), col("patient_id"), col("label"), col("split") if has_split else None
    )

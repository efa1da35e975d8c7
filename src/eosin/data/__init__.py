"""Labelled data for training: tile tables, tiles cut from image/mask pairs, cohorts, patient-level splits.

>>> table = load_tile_table("tiles/")  # one folder per class  # doctest: +SKIP
>>> train, val = patient_split(table.labels, table.patients, test_size=0.2, seed=0)  # doctest: +SKIP
>>> loader = make_loader(table.subset(train), batch_size=32, balance="weighted", augment=True)  # doctest: +SKIP

Names load on first use; only :func:`make_loader` and :class:`TileDataset` need PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eosin._lazy import lazy_getattr

_LAZY = {
    "TileTable": "eosin.data._table",
    "load_tile_table": "eosin.data._table",
    "read_tile": "eosin.data._table",
    "mask_fractions": "eosin.data._masks",
    "tiles_from_masks": "eosin.data._masks",
    "Cohort": "eosin.data._cohort",
    "read_cohort": "eosin.data._cohort",
    "patient_split": "eosin.data._splits",
    "patient_kfold": "eosin.data._splits",
    "check_no_leak": "eosin.data._splits",
    "Augment": "eosin.data._augment",
    "TileDataset": "eosin.data._torch",
    "make_loader": "eosin.data._torch",
    "cut_tiles": "eosin.data._balance",
    "stride_balanced_tiles": "eosin.data._balance",
    "PositiveFractionBatches": "eosin.data._balance",
    "apply_loader_plan": "eosin.data._torch",
    "choose_loader_workers": "eosin.data._torch",
    "default_loader_workers": "eosin.data._torch",
    "to_input": "eosin.data._torch",
}

__all__ = [
    "Augment",
    "Cohort",
    "PositiveFractionBatches",
    "TileDataset",
    "TileTable",
    "check_no_leak",
    "apply_loader_plan",
    "choose_loader_workers",
    "cut_tiles",
    "default_loader_workers",
    "load_tile_table",
    "make_loader",
    "mask_fractions",
    "patient_kfold",
    "patient_split",
    "read_cohort",
    "read_tile",
    "stride_balanced_tiles",
    "tiles_from_masks",
    "to_input",
]


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(_LAZY)


if TYPE_CHECKING:  # pragma: no cover
    from eosin.data._augment import Augment
    from eosin.data._balance import PositiveFractionBatches, cut_tiles, stride_balanced_tiles
    from eosin.data._cohort import Cohort, read_cohort
    from eosin.data._masks import mask_fractions, tiles_from_masks
    from eosin.data._splits import check_no_leak, patient_kfold, patient_split
    from eosin.data._table import TileTable, load_tile_table, read_tile
    from eosin.data._torch import TileDataset, apply_loader_plan, choose_loader_workers, default_loader_workers, make_loader, to_input

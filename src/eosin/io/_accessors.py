"""Typed reading of a slide store: one method per kind of group, returning the objects the library works with.

``store.grid()`` is a :class:`~eosin.tiles.TileGrid`, ``store.tissue()`` a :class:`~eosin.tissue.TissueMasks`,
``store.features("uni2")`` a :class:`~eosin.io.FeatureBag`; groups without a class of their own (predictions,
segmentation, QC flags...) come back as a :class:`~eosin.io.StoreGroup`. Each accessor takes the group's key, a
readable prefix of it, or nothing when the store holds one group of that kind (:func:`~eosin.io.pick_key`), so
user code never spells key strings. ``read_group(kind, key)`` stays the low-level reader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from eosin.io._keys import pick_key

if TYPE_CHECKING:  # pragma: no cover
    from eosin.io._features_h5 import FeatureBag
    from eosin.io._store import StoreGroup

__all__ = ["StoreAccessors"]


class StoreAccessors:
    """Mixin of :class:`~eosin.io.SlideStore`: typed accessors over ``keys``/``read_group``."""

    def pick(self, kind: str, key: str | None = None, *, grid: str | None = None) -> str:
        """The full key of one ``kind`` group: see :func:`~eosin.io.pick_key`."""
        return pick_key(self, kind, key, grid=grid)

    def group(self, kind: str, key: str | None = None, *, grid: str | None = None) -> StoreGroup:
        """One group of any kind, its key picked as :meth:`pick` does."""
        return self.read_group(kind, self.pick(kind, key, grid=grid))  # type: ignore[attr-defined]

    def tissue(self, key: str | None = None) -> Any:
        """The tissue detection stored as ``tissue/<key>``: a :class:`~eosin.tissue.TissueMasks`."""
        from eosin.tissue import TissueMasks

        group = self.group("tissue", key)
        return TissueMasks(
            tissue=np.asarray(group["tissue"], bool),
            pen=np.asarray(group["pen"], bool),
            sections=np.asarray(group["sections"], np.int32),
            downsample=tuple(group.attrs["downsample"]),
            origin=tuple(group.attrs["origin"]),
            mpp=group.attrs.get("mpp"),
            params=dict(group.attrs.get("params", {})),
        )

    def grid(self, key: str | None = None) -> Any:
        """The tile grid stored as ``grids/<key>``: a :class:`~eosin.tiles.TileGrid` (``grid.key`` is its key)."""
        from eosin.tiles import TileGrid

        group = self.group("grids", key)
        return TileGrid.from_group(group, group.attrs)

    def features(self, encoder: str | None = None, *, grid: str | None = None) -> FeatureBag:
        """Tile features of one encoder (``features/<encoder>--<grid>``): a :class:`~eosin.io.FeatureBag`.

        ``encoder`` is an encoder name (or a longer prefix, or a full key); ``grid`` a grid key or its readable
        part, for stores that hold the encoder's features on several grids. ``bag.features`` is ``(n, d)``,
        ``bag.coords`` ``(n, 2)`` level-0 pixels (the grid's tiles, in its order), ``bag.attrs`` what made
        them (``encoder``, ``grid``, ``weights_hash``...).
        """
        from eosin.io._features_h5 import FeatureBag

        group = self.group("features", encoder, grid=grid)
        attrs = dict(group.attrs)
        if "coords" in group:
            coords = np.asarray(group["coords"], np.int64)
        elif attrs.get("grid") in self.keys("grids"):  # type: ignore[attr-defined]
            grid_group = self.read_group("grids", attrs["grid"])  # type: ignore[attr-defined]
            coords = np.asarray(grid_group["coords"], np.int64)
        else:
            coords = None
        return FeatureBag(np.asarray(group["features"]), coords, attrs.get("names"), attrs)

    def predictions(self, model: str | None = None, *, grid: str | None = None) -> StoreGroup:
        """Tile class probabilities of a model (``predictions/<model key>``): arrays ``proba`` ``(n, classes)``
        and ``coords`` ``(n, 2)``; attributes ``classes``, ``grid``, ``model``..."""
        return self.group("predictions", model, grid=grid)

    def segmentation(self, key: str | None = None) -> StoreGroup:
        """A slide-scale segmentation (``segmentation/<key>``): uint8 probability maps (``foreground``,
        maybe ``interior``) on the grid given by the attributes ``downsample``, ``origin`` and ``shape``."""
        return self.group("segmentation", key)

    def qc(self, grid: str | None = None) -> StoreGroup:
        """The QC flags of a grid's tiles (``qc/<grid key>``): ``flags`` ``(n,)`` bit fields (attribute ``bits``)
        and per-tile measures."""
        return self.group("qc", grid)

    def attention(self, key: str | None = None) -> StoreGroup:
        """Per-tile attention of a slide-level model (``attention/<key>``): ``attention`` and ``coords``."""
        return self.group("attention", key)

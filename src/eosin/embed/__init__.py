"""Tile embeddings: a stored grid's tiles through a registry encoder into the slide's store.

>>> from eosin.embed import embed_store
>>> embed_store("out/slide/store.zarr", "resnet18", weights=None)  # doctest: +SKIP
"""

from eosin.embed._embed import check_precision, embed_store, features_key, select_device
from eosin.embed._prepare import TilePrep, reading_grid

__all__ = ["TilePrep", "check_precision", "embed_store", "features_key", "reading_grid", "select_device"]

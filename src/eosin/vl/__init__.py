"""Vision-language models: zero-shot classification, text and image retrieval, text-to-region heatmaps and
contrastive training of two-tower models (PLIP, QuiltNet, MedSigLIP, CONCH, or one trained here).

>>> from eosin.vl import list_vl_models
>>> "plip" in list_vl_models()
True

Arrays and objects in, arrays and objects out; the ``eosin zeroshot``, ``index``, ``search``, ``heatmap`` and
``train clip`` commands are thin layers over these functions. PyTorch loads on first use of a model.
"""

from __future__ import annotations

from eosin._lazy import lazy_getattr
from eosin.vl._registry import VLSpec, get_vl_spec, list_vl_models

__all__ = [
    "VLModel",
    "TileIndex",
    "VLSpec",
    "build_index",
    "class_embeddings",
    "contact_sheet",
    "evaluate_retrieval",
    "get_vl_spec",
    "index_model",
    "index_sources",
    "list_vl_models",
    "load_index",
    "load_prompts",
    "load_vl_model",
    "read_image",
    "recall_at_k",
    "search",
    "text_heatmap",
    "train_clip",
    "zero_shot",
    "zero_shot_sources",
]

_LAZY = {
    "VLModel": "eosin.vl._models",
    "load_vl_model": "eosin.vl._models",
    "load_prompts": "eosin.vl._prompts",
    "class_embeddings": "eosin.vl._prompts",
    "zero_shot": "eosin.vl._zeroshot",
    "zero_shot_sources": "eosin.vl._zeroshot",
    "build_index": "eosin.vl._index",
    "load_index": "eosin.vl._index",
    "search": "eosin.vl._index",
    "TileIndex": "eosin.vl._index",
    "index_model": "eosin.vl._index",
    "index_sources": "eosin.vl._index",
    "recall_at_k": "eosin.vl._retrieval",
    "evaluate_retrieval": "eosin.vl._retrieval",
    "read_image": "eosin.vl._sources",
    "contact_sheet": "eosin.vl._sheet",
    "text_heatmap": "eosin.vl._heatmap",
    "train_clip": "eosin.vl._train",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

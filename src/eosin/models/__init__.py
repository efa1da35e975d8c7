"""Model registry: tile encoders by name, in the manner of timm.

>>> from eosin.models import list_encoders, get_spec
>>> "uni2-h" in list_encoders("uni*")
True
>>> get_spec("virchow2").embedding_dim
2560

Listing and describing models needs no PyTorch; :func:`create_encoder` (and :class:`Encoder`) import it on use.
"""

from __future__ import annotations

from eosin._lazy import lazy_getattr
from eosin.models._registry import EncoderSpec, get_spec, list_encoders, register_encoder

__all__ = [
    "Encoder",
    "EncoderSpec",
    "create_encoder",
    "file_sha256",
    "get_spec",
    "list_encoders",
    "load_weights",
    "offline_source",
    "read_state_dict",
    "register_encoder",
    "resolve_folder",
    "resolve_weights",
    "weights_hash",
]

_LAZY = {
    "create_encoder": "eosin.models._create",
    "Encoder": "eosin.models._create",
    "file_sha256": "eosin.models._weights",
    "read_state_dict": "eosin.models._weights",
    "resolve_folder": "eosin.models._weights",
    "resolve_weights": "eosin.models._weights",
    "weights_hash": "eosin.models._weights",
    "load_weights": "eosin.models._keys",
    "offline_source": "eosin.models._weights",
}


__getattr__ = lazy_getattr(__name__, _LAZY)

"""Classifier checkpoints: a folder with ``model.safetensors`` (weights) and ``config.json`` (everything else)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from eosin.errors import EosinError, StoreError

__all__ = ["FORMAT", "checkpoint_key", "load_classifier", "save_classifier"]

FORMAT = "eosin-tile-classifier"
VERSION = 1


def save_classifier(model: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` (a :class:`TileClassifier`) to the folder ``path``, replacing it atomically.

    ``config.json`` records the registry name, classes, preprocessing (input size, mean, std), the mpp the model
    was trained at (or None), the head and the training parameters, and the fields common to every eosin checkpoint
    (``format_version``, ``eosin_version``, ``weights_sha256``: :func:`eosin.io.write_checkpoint`).
    """
    from eosin.io import write_checkpoint

    path = Path(path)
    config = {
        "format": FORMAT,
        "version": VERSION,
        "encoder": model.encoder.spec.name,
        "classes": list(model.classes),
        "head": model.head.config(),
        "preprocess": {"input_size": model.input_size, "mean": list(model.mean), "std": list(model.std)},
        "mpp": model.meta.get("mpp"),
        **{k: v for k, v in model.meta.items() if k not in ("mpp", "input_size")},
    }
    return write_checkpoint(
        path, model.state_dict(), config, metadata={"format": FORMAT}, replace_folder=True, json_default=str
    )


def load_classifier(path: str | os.PathLike[str], *, device: str = "cpu"):
    """Rebuild the :class:`TileClassifier` saved in the folder ``path``, in eval mode on ``device``.

    Raises
    ------
    EosinError
        The folder is not a classifier checkpoint (no config.json/model.safetensors, another format).
    WeightsMismatchError
        model.safetensors is damaged, or not the file config.json was written with (its SHA-256 differs).
    """
    from eosin.io import read_checkpoint
    from eosin.models import create_encoder
    from eosin.train._model import TileClassifier, make_head

    path = Path(path)
    config_path, weights_path = path / "config.json", path / "model.safetensors"
    if not (config_path.is_file() and weights_path.is_file()):
        raise EosinError(
            "not a classifier checkpoint (config.json and model.safetensors expected).",
            path=path,
            fix="point --model at the folder eosin train tiles wrote",
        )
    config = json.loads(config_path.read_text())
    if config.get("format") != FORMAT or config.get("version", 0) > VERSION:
        raise EosinError(
            f"checkpoint format {config.get('format')!r} version {config.get('version')} is not readable here.",
            path=path,
        )
    pre = config["preprocess"]
    overrides = config.get("encoder_kwargs") or {}
    encoder = create_encoder(config["encoder"], weights=None, tiny=bool(config.get("tiny")), **overrides)
    encoder.input_size = pre["input_size"]
    envelope = ("format", "version", "classes", "head", "preprocess", "format_version", "eosin_version")
    meta = {k: v for k, v in config.items() if k not in (*envelope, "weights_sha256")}
    meta["input_size"] = pre["input_size"]
    model = TileClassifier(encoder, make_head(config["head"]), config["classes"], meta)
    state, _ = read_checkpoint(path, config=config)
    model.load_state_dict(state, strict=True)
    # the encoder's weights are the checkpoint's, not the seeded initialisation it was built with
    from eosin.models import file_sha256

    encoder.seed, encoder.weights_file = None, str(weights_path)
    encoder.weights_sha256 = config.get("weights_sha256") or file_sha256(weights_path)
    return model.eval().to(device)


def checkpoint_key(path: str | os.PathLike[str]) -> str:
    """Store key of a checkpoint's predictions: its folder name and the first 8 hex of its weights' hash."""
    import hashlib
    import re

    path = Path(path)
    digest = hashlib.sha1()
    with open(path / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    name = re.sub(r"[^A-Za-z0-9._+=-]", "_", path.resolve().name)
    if not name:
        raise StoreError("cannot name predictions after the checkpoint folder.", path=path)
    return f"{name}-{digest.hexdigest()[:8]}"

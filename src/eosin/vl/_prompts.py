"""Class prompts: reading prompt files and turning each class's prompts into one text embedding.

Two file forms load (both JSON):

- class -> prompts: ``{"tumour": ["an H&E image of tumour.", "carcinoma"], "stroma": "tumour stroma"}``;
- CONCH's form: ``{"classnames": {"TUM": ["tumour", "adenocarcinoma"], ...}, "templates": ["an H&E image of
  CLASSNAME.", ...]}``: every name of a class goes into every template (``CLASSNAME`` or ``{}`` marks the place).

A prompt ensemble is the mean of the class's normalised prompt embeddings, normalised again (CLIP's and CONCH's
recipe; open_clip's ``build_zero_shot_classifier`` does the same).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import DataError

__all__ = ["class_embeddings", "load_prompts"]


def _fill(template: str, name: str) -> str:
    return template.replace("CLASSNAME", name).replace("{}", name)


def load_prompts(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, list[str]]:
    """Class -> list of prompts, in the file's class order, from a JSON file (or the parsed mapping).

    Raises
    ------
    DataError
        The file is not JSON, not one of the two forms, a class has no prompt, or a template has no
        ``CLASSNAME``/``{}`` placeholder; the message names the file (and the class) and the fix.
    """
    path = None
    if isinstance(source, Mapping):
        data: Any = source
    else:
        path = Path(source)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DataError("no such prompt file.", path=path, fix="check the path") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(
                f"the prompt file is not JSON ({exc}).",
                path=path,
                fix='write {"class": ["prompt", ...], ...} or {"classnames": {...}, "templates": [...]}',
            ) from exc
    if not isinstance(data, Mapping) or not data:
        raise DataError(
            "the prompt file must hold a non-empty JSON object.",
            path=path,
            fix='write {"class": ["prompt", ...], ...} or {"classnames": {...}, "templates": [...]}',
        )
    if "classnames" in data or "templates" in data:
        names, templates = data.get("classnames"), data.get("templates")
        if not isinstance(names, Mapping) or not isinstance(templates, list) or not templates:
            raise DataError(
                "a CONCH-style prompt file needs both 'classnames' (class -> names) and a non-empty 'templates' "
                "list.",
                path=path,
                fix='add "templates": ["an H&E image of CLASSNAME.", ...]',
            )
        bad = [t for t in templates if not isinstance(t, str) or ("CLASSNAME" not in t and "{}" not in t)]
        if bad:
            raise DataError(
                f"template {bad[0]!r} has no CLASSNAME (or {{}}) placeholder.",
                path=path,
                fix="put CLASSNAME where the class name goes",
            )
        out = {}
        for label, value in names.items():
            value = [value] if isinstance(value, str) else value
            out[str(label)] = [_fill(t, str(n)) for n in (value or []) for t in templates]
    else:
        out = {str(k): [v] if isinstance(v, str) else v for k, v in data.items()}
    for label, prompts in out.items():
        if (
            not isinstance(prompts, list)
            or not prompts
            or not all(isinstance(p, str) and p.strip() for p in prompts)
        ):
            raise DataError(
                f"class {label!r} has no prompts (each class needs a non-empty list of non-empty strings).",
                path=path,
                fix=f'give it prompts, e.g. "{label}": ["an H&E image of {label}."]',
            )
    return {k: list(v) for k, v in out.items()}


def class_embeddings(model: Any, prompts: Mapping[str, list[str]] | str | os.PathLike[str]) -> np.ndarray:
    """``(n_classes, d)`` float32 unit rows: per class, the mean of its normalised prompt embeddings, normalised.

    ``model`` is a :class:`~eosin.vl.VLModel` (anything with ``encode_text``); ``prompts`` a mapping from
    :func:`load_prompts` or a prompt file.
    """
    if not isinstance(prompts, Mapping):
        prompts = load_prompts(prompts)
    flat = [p for ps in prompts.values() for p in ps]
    emb = np.asarray(model.encode_text(flat), dtype=np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    out, start = [], 0
    for ps in prompts.values():
        mean = emb[start : start + len(ps)].mean(axis=0)
        out.append(mean / np.linalg.norm(mean))
        start += len(ps)
    return np.asarray(out, dtype=np.float32)

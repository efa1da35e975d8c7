"""What made a result: versions of the software, hashes of the inputs. One place for every output record."""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from importlib import metadata

__all__ = ["sha256_file", "versions"]

#: distributions whose versions can change a result; those not installed are left out
_PACKAGES = ("numpy", "torch", "timm", "scikit-learn", "zarr", "onnxruntime")


def versions() -> dict[str, str]:
    """``{"eosin": ..., "python": ..., "numpy": ..., "torch": ...}``: versions of eosin, Python and the installed
    libraries that compute results (a module's ``__version__`` when it is loaded, else the package metadata:
    nothing is imported)."""
    from eosin import __version__

    out = {"eosin": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        module = sys.modules.get(name.replace("scikit-learn", "sklearn"))
        version = getattr(module, "__version__", None)  # the build's own (torch: with its +cu/+cpu label)
        if version is None:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        out[name] = str(version)
    return out


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()

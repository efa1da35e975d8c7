"""The package layout stays as docs/architecture.md describes it (issue 11).

- A package (``eosin/<pkg>/``) uses only the public names of another package: no ``eosin.<other>._module``
  import and no ``_private`` name taken from ``eosin.<other>``. The top-level shared internal modules
  (``eosin._device``, ``eosin._lazy`` ...) may be imported anywhere.
- No module under ``src/eosin`` is longer than 500 lines.

Both checks read the source with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 500


def _modules(src: Path) -> list[Path]:
    return sorted(p for p in (src / "eosin").rglob("*.py") if "__pycache__" not in p.parts)


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _resolve(node: ast.ImportFrom, here: list[str], is_init: bool) -> str:
    """The absolute module name of ``from <module> import ...``, relative forms included."""
    if not node.level:
        return node.module or ""
    package = here if is_init else here[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _import_module_literal(node: ast.Call) -> str | None:
    """The name in ``importlib.import_module("eosin.x._y")`` (a literal first argument), else None."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name == "import_module" and node.args and isinstance(node.args[0], ast.Constant):
        value = node.args[0].value
        return value if isinstance(value, str) else None
    return None


def offending_imports(src: Path = SRC) -> list[str]:
    """Every import of another package's private module or private name, as ``file:line: what``."""
    root = src / "eosin"

    def package_of(dotted: list[str]) -> str | None:
        """``eosin.<pkg>`` for a module inside a package; None for top-level modules and non-eosin names."""
        if len(dotted) > 1 and dotted[0] == "eosin" and (root / dotted[1]).is_dir():
            return f"eosin.{dotted[1]}"
        return None

    found = []
    for path in _modules(src):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_init = parts[-1] == "__init__"
        here = parts[:-1] if is_init else parts
        owner = package_of(here) or "eosin"
        where = path.relative_to(src.parent)

        def foreign_private_module(module: str) -> bool | None:
            """None: not another package; else whether ``module`` is one of its private modules."""
            dotted = module.split(".")
            pkg = package_of(dotted)
            if pkg is None or pkg == owner:
                return None
            return any(_private(p) for p in dotted[2:])

        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if foreign_private_module(alias.name):
                        found.append(f"{where}:{node.lineno}: import {alias.name}")
            elif isinstance(node, ast.ImportFrom):
                module = _resolve(node, here, is_init)
                kind = foreign_private_module(module)
                if kind is None:
                    continue
                names = [a.name for a in node.names]
                if kind:
                    found.append(f"{where}:{node.lineno}: from {module} import {', '.join(names)}")
                else:
                    for name in filter(_private, names):
                        found.append(f"{where}:{node.lineno}: from {module} import {name}")
            elif isinstance(node, ast.Call):
                target = _import_module_literal(node)
                if target and foreign_private_module(target):
                    found.append(f"{where}:{node.lineno}: import_module({target!r})")
    return found


def test_no_package_imports_another_package_private_names():
    found = offending_imports()
    assert not found, (
        f"{len(found)} imports of another package's private module or name; make the name public in that "
        "package's __init__ (and docs/architecture.md) and import it from there:\n" + "\n".join(found)
    )


def test_no_module_over_500_lines():
    long = []
    for path in _modules(SRC):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            long.append(f"{path.relative_to(SRC.parent)}: {n} lines")
    assert not long, f"modules over {MAX_LINES} lines; split them along a real seam:\n" + "\n".join(long)


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        ("qc/_probe.py", "from eosin.run._stages import _open\n", True),
        ("qc/_probe.py", "import eosin.io._atomic\n", True),
        ("qc/_probe.py", "from eosin.run import _store_for\n", True),
        ("qc/_probe.py", "from ..io._atomic import atomic_write_text\n", True),
        ("qc/__init__.py", "from ..io import _atomic\n", True),
        ("qc/_probe.py", "import importlib\nimportlib.import_module('eosin.vl._index')\n", True),
        ("_device.py", "from eosin.io._atomic import atomic_write_text\n", True),
        ("qc/_probe.py", "from eosin.io import atomic_write_text\n", False),
        ("qc/_probe.py", "from eosin._device import select_device\n", False),
        ("qc/_probe.py", "from eosin.qc._flags import x\n", False),
        ("qc/_probe.py", "from ._flags import _x\n", False),
        ("qc/__init__.py", "from ._flags import _x\n", False),
        ("qc/_probe.py", "from eosin import errors, _lazy\n", False),
    ],
)
def test_the_scan_sees_what_it_should(tmp_path, path, source, expected):
    """The scanner itself on a small fake tree."""
    fake = tmp_path / "eosin"
    for pkg in ("qc", "run", "io", "vl"):
        (fake / pkg).mkdir(parents=True)
        (fake / pkg / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / path).write_text(source)
    assert bool(offending_imports(tmp_path)) is expected

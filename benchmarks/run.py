#!/usr/bin/env python3
"""Run benchmarks by name: ``python benchmarks/run.py NAME...`` (``--list`` shows the names).

Each ``benchmarks/bench_*.py`` module declares ``BENCHES`` (the names it answers) and ``run(names) -> list[dict]``.
Every comparison prints as one JSON line:
``{"bench", "unit", "eosin", "baseline", "baseline_value", "ratio", "peak_rss_mb", ...}``.
Baselines are installed by the benchmark itself into venvs under ``benchmarks/_work/``, never into the project.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def modules() -> dict[str, object]:
    found = {}
    for path in sorted(HERE.glob("bench_*.py")):
        module = importlib.import_module(path.stem)
        for name in getattr(module, "BENCHES", ()):
            found[name] = module
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="benchmark names (or module groups); default: --list")
    parser.add_argument("--list", action="store_true", help="list the benchmark names")
    args = parser.parse_args(argv)
    table = modules()
    if args.list or not args.names:
        for name, module in table.items():
            print(f"{name}\t{module.__name__}")
        return 0
    unknown = [n for n in args.names if n not in table]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {sorted(table)}", file=sys.stderr)
        return 2
    by_module: dict[object, list[str]] = {}
    for name in args.names:
        by_module.setdefault(table[name], []).append(name)
    for module, names in by_module.items():
        for record in module.run(names):
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

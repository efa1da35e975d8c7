#!/usr/bin/env python3
"""Run benchmarks by name: ``python benchmarks/run.py NAME...`` (``--list`` shows the names; ``--all`` runs all).

Each ``benchmarks/bench_*.py`` module declares ``BENCHES`` (the names it answers) and ``run(names) -> list[dict]``.
Every comparison prints as one JSON line:
``{"bench", "unit", "eosin", "baseline", "baseline_value", "ratio", "peak_rss_mb", ...}``.
Baselines are installed by the benchmark itself into venvs under ``benchmarks/_work/``, never into the project.
Every record is also appended, with the machine's description (CPU model and flags, cores, GPU, library versions,
date), to ``benchmarks/results/<machine>.jsonl`` (``--no-save``: not); ``python benchmarks/render.py`` rewrites the
per-machine table of docs/benchmarks.md from those files.
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
    parser.add_argument("--all", action="store_true", help="run every benchmark")
    parser.add_argument(
        "--no-save", action="store_true", help="do not append to benchmarks/results/<machine>.jsonl"
    )
    args = parser.parse_args(argv)
    table = modules()
    if args.all:
        args.names = list(table)
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
    import _machine

    machine = _machine.machine_info()
    failed = 0
    for module, names in by_module.items():
        try:
            records = module.run(names)
        except Exception as exc:  # noqa: BLE001 - one broken bench must not lose the others' figures
            if not args.all:
                raise
            print(f"{names} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
            continue
        for record in records:
            print(json.dumps(record), flush=True)
        if records and not args.no_save:
            path = _machine.append(records, machine)
            print(f"appended to {path.relative_to(HERE.parent)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

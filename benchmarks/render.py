#!/usr/bin/env python3
"""Render the latest figures of every machine kind side by side into docs/benchmarks.md.

``python benchmarks/render.py`` reads ``benchmarks/results/*.jsonl`` (appended by ``run.py``), keeps the newest
record of each benchmark on each machine, and rewrites the part of docs/benchmarks.md between the
``<!-- results:start -->`` and ``<!-- results:end -->`` markers (``--print``: print it instead).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "benchmarks.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def latest(results: Path = HERE / "results") -> dict[str, dict[str, dict]]:
    """``{machine: {bench: newest record}}`` over every results file."""
    out: dict[str, dict[str, dict]] = {}
    for path in sorted(results.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            env = record.get("env") or {}
            machine = env.get("machine", path.stem)
            seen = out.setdefault(machine, {})
            old = seen.get(record["bench"])
            if old is None or env.get("date", "") >= (old.get("env") or {}).get("date", ""):
                seen[record["bench"]] = record
    return out


def _num(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and v >= 100:
        return f"{v:,.0f}"
    return f"{v:,.3g}" if isinstance(v, float) else str(v)


def _cell(r: dict) -> str:
    text = f"**{_num(r.get('eosin'))}** vs {_num(r.get('baseline_value'))} = **{_num(r.get('ratio'))}×**"
    if r.get("eosin_fp32") is not None:
        text += f"<br>fp32 {_num(r['eosin_fp32'])} ({_num(r.get('ratio_fp32'))}×)"
    if r.get("precision"):
        text += f"<br>auto → {r.get('runtime') or 'torch'}-{r['precision']}"
    return text


def render(table: dict[str, dict[str, dict]]) -> str:
    machines = sorted(table)
    if not machines:
        return "(no results yet: run `python benchmarks/run.py --all`)"
    envs = {m: next(iter(table[m].values())).get("env") or {} for m in machines}
    benches = sorted({b for m in machines for b in table[m]})
    lines = [
        "| | " + " | ".join(f"`{m}`" for m in machines) + " |",
        "|---|" + "---|" * len(machines),
        "| CPU | "
        + " | ".join(f"{envs[m].get('cpu')}, {envs[m].get('cores')} cores" for m in machines)
        + " |",
        "| flags | " + " | ".join(", ".join(envs[m].get("cpu_flags") or []) or "–" for m in machines) + " |",
        "| GPU | " + " | ".join(envs[m].get("gpu") or "none" for m in machines) + " |",
        "| torch | " + " | ".join(str((envs[m].get("versions") or {}).get("torch")) for m in machines) + " |",
    ]
    for bench in benches:
        cells = []
        for m in machines:
            r = table[m].get(bench)
            if r is None:
                cells.append("not run")
                continue
            env = r.get("env") or {}
            load = env.get("load_avg_1m")
            cells.append(
                _cell(r)
                + f"<br><sub>{env.get('date', '')[:10]}, load {load}, {env.get('commit') or ''}</sub>"
            )
        unit = next((table[m][bench].get("unit") for m in machines if bench in table[m]), "")
        lines.append(f"| `{bench}` ({unit}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--print", action="store_true", help="print the table instead of rewriting the doc")
    args = parser.parse_args(argv)
    text = render(latest())
    if args.print:
        print(text)
        return 0
    doc = DOC.read_text()
    if START not in doc or END not in doc:
        print(f"{DOC} has no {START} ... {END} markers", file=sys.stderr)
        return 2
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    print(f"rewrote the table in {DOC.relative_to(HERE.parent)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Running the corpus (``corpus.py``) and classifying what happened; the table of docs/reliability.md.

``python tests/corpus_run.py`` runs every case (slow ones too) and rewrites the table between the
``corpus-table`` markers of docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from corpus import ALLOWED_AFTER_REFUSAL, GB, ROOT, Case, argv_for


# ---------------------------------------------------------------- running and classifying
def run_inprocess(argv: list[str]) -> tuple[int | None, str, str]:
    """``eosin ARGV`` in this process: exit code (None when an exception escaped), stdout, stderr."""
    from eosin.cli._main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except BaseException as exc:  # noqa: BLE001 - an escaped exception is what the corpus counts
            import traceback

            err.write("Traceback (escaped main):\n" + "".join(traceback.format_exception(exc)))
            code = None
    return code, out.getvalue(), err.getvalue()


def run_capped(argv: list[str], *, memory: int = 2 * GB, seconds: int = 60) -> tuple[int | None, str, str]:
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    import eosin

    src = Path(eosin.__file__).resolve().parents[1]  # the eosin this process imported
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "eosin", *argv], capture_output=True, text=True, timeout=seconds,
            preexec_fn=cap, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return -1, "", "HANG"
    return done.returncode, done.stdout, done.stderr


def _api_geojson(path: Path) -> tuple[int | None, str, str]:
    from eosin.errors import EosinError
    from eosin.io import read_geojson

    try:
        read_geojson(path)
    except EosinError as exc:
        return 1, "", f"error: {exc}\n"
    except Exception as exc:  # noqa: BLE001
        return None, "", f"Traceback: {type(exc).__name__}: {exc}\n"
    return 0, "", ""


def observe(case: Case, folder: Path) -> tuple[str, str]:
    """Run ``case`` with inputs and outputs under ``folder``; return (category, detail)."""
    path = case.build(folder)
    out = folder / "out"
    if case.command == "api-geojson":
        code, stdout, stderr = _api_geojson(path)
    elif case.capped:
        code, stdout, stderr = run_capped(argv_for(case.command, path, out))
    else:
        code, stdout, stderr = run_inprocess(argv_for(case.command, path, out))
    text = stdout + stderr
    if stderr == "HANG":
        return "hang", "no exit within 60 s"
    if "MemoryError" in text or code in (-9, 137) or "std::bad_alloc" in text:
        return "runaway memory", text[-300:]
    if code is None or "Traceback" in text:
        return "traceback", text[-600:]
    leftovers = _leftovers(out) if case.command not in ("info", "info-deep", "eval-cls", "eval-seg") else []
    if case.command.startswith(("tile-out", "import-out")):
        leftovers += [str(p) for p in (folder / "afile").parent.glob("afile*") if p.is_dir()]
    if case.expect == "accepted":
        if code != 0:
            return "wrongly refused", text[-400:]
        return (
            ("accepted", "")
            if case.check is None or case.check(path, out, stdout)
            else ("silently wrong", stdout[-400:])
        )
    if code == 0:
        return "silently wrong", "exit 0 for an input that should be refused: " + text[-300:]
    lines = [line for line in stderr.splitlines() if line.startswith(("error:", "Error:"))]
    one_line = len(lines) == 1 and ("Fix:" in lines[0] or (code == 2 and lines[0].startswith("Error:")))
    if case.command in ("info", "info-deep"):  # the doctor's record, or a usage error
        ok = (("unreadable" in stdout or "corrupt-tiles" in stdout) and "Fix:" in stdout) or one_line
    else:
        ok = one_line
    if not ok:
        return "unclear error", text[-400:]
    if leftovers:
        return "partial output", ", ".join(leftovers[:5])
    return "refused", ""


def _leftovers(out: Path) -> list[str]:
    """What a refused input left that it should not have: temporary or staging files, a store without any group,
    files other than the diagnostic pictures. Complete store groups (the tissue masks of a slide without tissue,
    kept as a cached result) are not leftovers."""
    if not out.exists():
        return []
    found = []
    for p in out.rglob("*"):
        rel = str(p.relative_to(out))
        if (
            (".staging" in p.parts and p.is_file())
            or p.name.endswith((".tmp", ".partial"))
            or ".tmp" in p.name
        ):
            found.append(rel)
        elif p.name.endswith(".zarr") and p.is_dir():
            if {c.name for c in p.iterdir()} <= {"zarr.json"}:
                found.append(rel + " (empty store)")
        elif p.is_file() and ".zarr" not in rel and p.name not in ALLOWED_AFTER_REFUSAL:
            found.append(rel)
    return sorted(found)


# ---------------------------------------------------------------- the table for docs/reliability.md
COLUMNS = ("inputs", "typed errors", "accepted right", "tracebacks", "hangs", "runaway memory", "silently wrong",
           "partial outputs", "unclear errors", "good inputs refused")  # fmt: skip
_CATEGORY_COLUMN = {
    "refused": "typed errors", "accepted": "accepted right", "traceback": "tracebacks", "hang": "hangs",
    "runaway memory": "runaway memory", "silently wrong": "silently wrong", "partial output": "partial outputs",
    "unclear error": "unclear errors", "wrongly refused": "good inputs refused",
}  # fmt: skip


def table(results: list[dict]) -> str:
    kinds = sorted({r["kind"] for r in results})
    rows = []
    for kind in [*kinds, "all"]:
        sub = [r for r in results if kind == "all" or r["kind"] == kind]
        counts = dict.fromkeys(COLUMNS, 0)
        counts["inputs"] = len(sub)
        for r in sub:
            counts[_CATEGORY_COLUMN[r["category"]]] += 1
        label = f"**{kind}**" if kind == "all" else kind
        rows.append(f"| {label} | " + " | ".join(str(counts[c]) for c in COLUMNS) + " |")
    head = "| kind | " + " | ".join(COLUMNS) + " |\n|" + "---|" * (len(COLUMNS) + 1)
    return head + "\n" + "\n".join(rows)


def write_docs(report: Path, doc: Path = ROOT / "docs" / "reliability.md") -> None:
    results = json.loads(report.read_text())
    text = doc.read_text()
    start, end = "<!-- corpus-table -->", "<!-- /corpus-table -->"
    body = table(results)
    bad = [r for r in results if r["category"] not in ("refused", "accepted")]
    if bad:
        body += "\n\nNot yet as they should be:\n\n" + "\n".join(
            f"- `{r['id']}`: {r['category']}" for r in bad
        )
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    doc.write_text(f"{before}{start}\n{body}\n{end}{after}")


if __name__ == "__main__":  # run everything (slow cases too) and rewrite the table
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "corpus.json"
        env = {**os.environ, "EOSIN_CORPUS_REPORT": str(report), "PYTHONPATH": str(ROOT / "src")}
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_corpus.py")],
                       env=env, cwd=ROOT)  # fmt: skip
        write_docs(report)
        print(table(json.loads(report.read_text())))

"""The cohort QC report: ``index.html`` (thumbnails, overlays, per-slide metrics) and ``results.tsv``.

Static HTML with relative links to each slide's pictures; a few lines of inline script sort the table by a
column when its header is clicked (no external dependency; the page reads fine without script).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["COLUMNS", "write_report"]

#: columns of results.tsv and of the report's table, in order
COLUMNS = (
    "name",
    "status",
    "mpp",
    "tissue_fraction",
    "pen_fraction",
    "edge_fraction",
    "dark_fraction",
    "stain_fraction",
    "n_tiles",
    "blur_fraction",
    "flagged_tile_fraction",
    "blur_score_median",
    "stain_od_mean",
    "stain_under_fraction",
    "stain_clipped_fraction",
    "stain_saturation",
    "warnings",
    "error",
)
#: columns added after ``stain_fraction`` when some slide ran the learned artefact detector (``--artefact-model``)
LEARNED_COLUMNS = ("learned_artefact_fraction", "tiles_learned_artefact")

#: a value above its limit is highlighted in the report (a slide worth a look)
ATTENTION = {
    "pen_fraction": 0.01,
    "dark_fraction": 0.02,
    "edge_fraction": 0.005,
    "stain_fraction": 0.05,
    "learned_artefact_fraction": 0.01,
    "stain_clipped_fraction": 0.01,
    "blur_fraction": 0.1,
    "flagged_tile_fraction": 0.2,
}

_SORT_JS = """
document.querySelectorAll('th').forEach((th, i) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
  const key = r => { const t = r.cells[i].dataset.v ?? r.cells[i].textContent; const n = parseFloat(t);
                     return isNaN(n) ? t : n; };
  const dir = th.dataset.dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
  rows.sort((a, b) => { const x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) * (dir === 'asc' ? 1 : -1); });
  rows.forEach(r => body.appendChild(r));
}));
"""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; }
th { background: #f0f0f0; cursor: pointer; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.high { background: #ffe0a0; font-weight: bold; }
tr.failed td { background: #fde8e8; }
img { max-width: 170px; max-height: 170px; display: block; }
.legend span { display: inline-block; padding: 2px 8px; margin-right: 6px; color: #fff; border-radius: 3px; }
.warn { color: #8a5a00; min-width: 220px; } .err { color: #b00000; white-space: pre-wrap; max-width: 420px; }
"""


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value)
    return str(value)


def write_report(out: Path, rows: Sequence[dict[str, Any]]) -> tuple[Path, Path]:
    """Write ``out/index.html`` and ``out/results.tsv`` for ``rows`` (one per slide, atomically).

    A row is a slide's metrics (:func:`~eosin.qc.qc_stage`) with ``status`` ``"ok"``, or ``{"name", "slide",
    "status": "failed", "error"}``; pictures are linked from ``out/<row["out"]>/``.
    """
    from eosin.io import atomic_write_text
    from eosin.qc._pictures import COLOURS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    columns = COLUMNS
    learned = any("learned_artefact_fraction" in row for row in rows)
    if learned:
        at = COLUMNS.index("stain_fraction") + 1
        columns = (*COLUMNS[:at], *LEARNED_COLUMNS, *COLUMNS[at:])
    tsv = ["\t".join(columns)]
    for row in rows:
        tsv.append("\t".join(_cell(row.get(c)).replace("\t", " ").replace("\n", " ") for c in columns))
    atomic_write_text(out / "results.tsv", "\n".join(tsv) + "\n")

    shown = [c for c in columns if c != "error"]  # a failed slide's error fills its picture cells
    n_failed = sum(r.get("status") != "ok" for r in rows)
    legend = "".join(
        f'<span style="background: rgb{c}">{html.escape(name.replace("_", " "))}</span>'
        for name, c in COLOURS.items()
        if learned or name != "learned_artefact"
    )
    head = "".join(
        f'<th title="{html.escape(c)}">{html.escape(c.replace("_", " "))}</th>'
        for c in ("thumbnail", "artefacts", "tiles", *shown)
    )
    body = []
    for row in rows:
        ok = row.get("status") == "ok"
        pics = []
        for name in ("thumbnail", "overlay", "tiles") if ok else ():
            src = html.escape(quote(f"{row['out']}/{name}.png"), quote=True)
            pics.append(f'<td><a href="{src}"><img src="{src}" alt="{name}" loading="lazy"></a></td>')
        if not ok:
            pics.append(f'<td colspan="3" class="err">{html.escape(_cell(row.get("error")))}</td>')
        cells = []
        for c in shown:
            value = row.get(c)
            text = html.escape(_cell(value))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                high = " high" if c in ATTENTION and value > ATTENTION[c] else ""
                cells.append(f'<td class="num{high}" data-v="{_cell(value)}">{text}</td>')
            elif c == "warnings":
                cells.append(f'<td class="warn">{text}</td>')
            else:
                cells.append(f"<td>{text}</td>")
        body.append(f'<tr class="{"ok" if ok else "failed"}">{"".join(pics)}{"".join(cells)}</tr>')
    learned_note = "; learned artefact: the share of the image the learned detector flags" if learned else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>eosin QC report</title><style>{_CSS}</style></head>
<body>
<h1>eosin QC report</h1>
<p>{len(rows)} slide(s), {n_failed} failed. Fractions: tissue, pen and coverslip edge of the whole image; dark
(folds), stain (over-stained or clipped) of the tissue; blur and flagged of the tiles{learned_note}. Click a column to sort;
click a picture to open it; highlighted values deserve a look. Metrics per slide: <code>&lt;slide&gt;/metrics.json</code>; all: <a
href="results.tsv">results.tsv</a>.</p>
<p class="legend">{legend}</p>
<table><thead><tr>{head}</tr></thead><tbody>
{"".join(body)}
</tbody></table>
<script>{_SORT_JS}</script>
</body></html>
"""
    atomic_write_text(out / "index.html", page)
    return out / "index.html", out / "results.tsv"

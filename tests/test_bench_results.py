"""benchmarks/: results appended per machine kind, and the side-by-side table rendered from them."""

from __future__ import annotations

import json
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import _machine  # noqa: E402
import render  # noqa: E402


def test_machine_info_names_the_machine_kind():
    info = _machine.machine_info()
    assert info["cores"] >= 1 and info["cpu"] and info["date"].endswith("Z")
    assert (
        info["machine"].endswith(
            f"-{info['cores']}c" + ("-avx512bf16" if "avx512_bf16" in info["cpu_flags"] else "")
        )
        or info["gpu"]
    )
    assert set(info["versions"]) >= {"python", "torch", "numpy"}


def test_the_newest_record_of_each_bench_on_each_machine_is_rendered(tmp_path, monkeypatch):
    monkeypatch.setattr(_machine, "RESULTS", tmp_path)
    a = {"machine": "amd-epyc-2c-avx512bf16", "cpu": "AMD EPYC", "cores": 2, "cpu_flags": ["avx512_bf16"]}
    b = {"machine": "intel-xeon-2c-avx512bf16", "cpu": "Intel Xeon", "cores": 2, "cpu_flags": ["avx512_bf16"]}
    rec = {"bench": "train-tiles", "unit": "tiles/s", "baseline_value": 20.0}
    _machine.append([{**rec, "eosin": 30.0, "ratio": 1.5}], {**a, "date": "2026-12-01T10:00:00Z"})
    _machine.append(
        [{**rec, "eosin": 44.0, "ratio": 2.2, "precision": "bf16"}], {**a, "date": "2026-12-04T10:00:00Z"}
    )
    _machine.append([{**rec, "eosin": 5.1, "ratio": 0.93}], {**b, "date": "2026-12-03T10:00:00Z"})
    lines = (tmp_path / "amd-epyc-2c-avx512bf16.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["env"]["date"].startswith("2026-12-04")
    table = render.latest(tmp_path)
    assert table["amd-epyc-2c-avx512bf16"]["train-tiles"]["eosin"] == 44.0  # the newer of the two
    text = render.render(table)
    header, row = text.splitlines()[0], text.splitlines()[-1]
    assert "`amd-epyc-2c-avx512bf16`" in header and "`intel-xeon-2c-avx512bf16`" in header
    assert (
        row.startswith("| `train-tiles` (tiles/s)")
        and "**44**" in row
        and "**5.1**" in row
        and "**30**" not in row
    )

"""Every bad or unusual input of the corpus (``corpus.py``) through the commands that take it.

Each case must end as it should: a refused input with exit code 1 or 2, one ``error:`` line with a fix (for
``eosin info``: an ``unreadable``/``corrupt-tiles`` problem with a fix), no traceback, no hang, no runaway memory
and nothing half-written; an accepted input with exit code 0 and the right result. Inputs that hang or allocate
are the point run in a subprocess with a 60 s and 2 GiB cap. With ``EOSIN_CORPUS_REPORT=FILE`` the outcomes are
written to FILE as JSON (``python tests/corpus_run.py`` does that and rewrites docs/reliability.md's table).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from corpus_cases import CASES
from corpus_run import observe

_RESULTS: list[dict] = []


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    target = os.environ.get("EOSIN_CORPUS_REPORT")
    if target:
        Path(target).write_text(json.dumps(_RESULTS, indent=1))


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in CASES]
)
def test_corpus_case(case, tmp_path, data_dir):
    category, detail = observe(case, tmp_path)
    _RESULTS.append({"id": case.id, "kind": case.kind, "command": case.command, "category": category,
                     "detail": detail[-300:]})  # fmt: skip
    assert category == ("accepted" if case.expect == "accepted" else "refused"), detail

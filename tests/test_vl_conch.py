"""CONCH against MahmoodLab's own package, where it is installed.

The ``conch`` package is not on PyPI (``pip install git+https://github.com/Mahmoodlab/CONCH.git``), so the suite
cannot install it and this test skips without it; ``scripts/check_conch.py`` is the check, and docs/vision-language.md
records its last result.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import DATA, ROOT


@pytest.mark.slow
def test_conch_embeddings_equal_the_conch_packages_own_forward_pass():
    pytest.importorskip("conch.open_clip_custom", reason="MahmoodLab's conch package is not on PyPI")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_conch.py"), "--tiles", str(DATA / "tiles" / "kather2016")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["image_max_abs_diff"] < 1e-4 and result["text_max_abs_diff"] < 1e-4

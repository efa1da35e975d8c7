"""Object Hausdorff on a 4096 x 2048 mask with about 3,000 small false positives, against eosin's previous code.

``python benchmarks/run.py hausdorff-specks``

The case of issue 13: 40 elliptic glands in the truth; the prediction holds them shifted by a few pixels, eroded
by 2 px, a quarter of them missed, plus specks of 1-2 px on the background, 2,955 predicted objects (seed 7, by
``tests/test_hausdorff_speed.scale_case``). eosin side: ``eosin.evaluate.object_hausdorff``. Baseline: the
implementation it replaced (``tests/hausdorff_oracle.py``, labels renumbered by ``np.unique`` as before), which
issue 13 measured at 249 s on its own such mask. Both must give the same value (checked). Each side runs in its
own process; unit: seconds (lower is better, ratio = eosin / baseline), peak RSS of each process.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import _common

BENCHES = ["hausdorff-specks"]
TESTS = Path(__file__).resolve().parent.parent / "tests"


def _case():
    sys.path.insert(0, str(TESTS))
    import numpy as np
    from test_hausdorff_speed import scale_case

    return scale_case(np.random.default_rng(7), shape=(2048, 4096), glands=40, specks=4500)


def _side(which: str) -> None:
    truth, pred = _case()
    t0 = time.perf_counter()
    if which == "eosin":
        from eosin.evaluate import object_hausdorff

        value = object_hausdorff(truth, pred)
    else:
        import numpy as np
        from hausdorff_oracle import _object_hausdorff

        from eosin.evaluate._seg_overlap import Overlap

        def sequential(labels):  # the renumbering as it was (a sort of every pixel)
            values, inverse = np.unique(labels, return_inverse=True)
            inverse = inverse.reshape(labels.shape).astype(np.int64)
            return (inverse + 1, len(values)) if values[0] != 0 else (inverse, len(values) - 1)

        t, n_t = sequential(truth)
        p, n_p = sequential(pred)
        counts = np.bincount((t * (n_p + 1) + p).ravel(), minlength=(n_t + 1) * (n_p + 1))
        value = _object_hausdorff(Overlap(counts.reshape(n_t + 1, n_p + 1), t, p))
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "value": value, "objects": int(pred.max())}))


def run(names: list[str]) -> list[dict]:
    e, rss = _common.run_measured([sys.executable, __file__, "eosin"], env={"OMP_NUM_THREADS": "1"})
    b, base_rss = _common.run_measured([sys.executable, __file__, "baseline"], env={"OMP_NUM_THREADS": "1"})
    if e["value"] != b["value"]:
        raise SystemExit(f"values differ: eosin {e['value']!r}, baseline {b['value']!r}")
    return [
        {
            "bench": "hausdorff-specks",
            "unit": "s",
            "eosin": round(e["seconds"], 2),
            "baseline": "eosin before issue 13",
            "baseline_value": round(b["seconds"], 2),
            "ratio": round(e["seconds"] / b["seconds"], 4),
            "peak_rss_mb": round(rss, 1),
            "baseline_peak_rss_mb": round(base_rss, 1),
            "predicted_objects": e["objects"],
            "object_hausdorff": e["value"],
        }
    ]


if __name__ == "__main__":
    _side(sys.argv[1])

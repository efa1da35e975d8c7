"""One ABMIL training epoch over 1,000 bags x 1,000 instances x 1,024 features, against a plain PyTorch loop.

``python benchmarks/run.py mil-epoch``

Bags are random float32 features generated on the fly, bag ``i`` from ``numpy.random.default_rng(i)``, so the
4 GB of features never sit in memory and both sides train on the same bags; the generation time (the same for
both) is included. Labels alternate 0/1. eosin side: ``eosin.aggregate.ABMIL(epochs=1, device="cpu")`` with its
defaults (hidden 512, attention 256, dropout 0.25, Adam lr 2e-4, balanced class weights, one bag per step),
bags handed over as a lazy sequence. Baseline: the same gated-attention network and optimiser written as a
straightforward PyTorch loop in this file. Each side runs in its own process; unit: seconds per epoch (lower is
better, ratio = eosin / baseline), with the peak RSS of the eosin process. CPU seconds of each process are
reported too: on a shared machine they vary less than wall time.
"""

from __future__ import annotations

import json
import sys
import time

import _common

BENCHES = ("mil-epoch",)
N_BAGS, N_INSTANCES, N_FEATURES = 1000, 1000, 1024


class RandomBags:
    """Bag ``i``: ``(N_INSTANCES, N_FEATURES)`` standard-normal float32 from ``default_rng(i)``, made on access."""

    def __len__(self) -> int:
        return N_BAGS

    def __getitem__(self, i: int):
        import numpy as np

        return np.random.default_rng(int(i)).standard_normal((N_INSTANCES, N_FEATURES), dtype=np.float32)


def eosin_side() -> dict:
    import numpy as np

    from eosin.aggregate import ABMIL

    labels = np.arange(N_BAGS) % 2
    t0, c0 = time.perf_counter(), time.process_time()
    agg = ABMIL(epochs=1, device="cpu").fit(RandomBags(), labels)
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "train_loss": agg.history_[0]["train_loss"],
    }


def baseline_side() -> dict:
    import numpy as np
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Sequential(nn.Linear(N_FEATURES, 512), nn.ReLU(), nn.Dropout(0.25))
            self.a = nn.Sequential(nn.Linear(512, 256), nn.Tanh(), nn.Dropout(0.25))
            self.b = nn.Sequential(nn.Linear(512, 256), nn.Sigmoid(), nn.Dropout(0.25))
            self.c = nn.Linear(256, 1)
            self.head = nn.Linear(512, 2)

        def forward(self, x):
            h = self.fc(x)
            a = torch.softmax(self.c(self.a(h) * self.b(h)).T, dim=1)
            return self.head(a @ h)

    bags = RandomBags()
    labels = np.arange(N_BAGS) % 2
    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=1e-5)
    model.train()
    total = 0.0
    for i in np.random.default_rng(0).permutation(N_BAGS):
        x = torch.from_numpy(bags[i])
        loss = nn.functional.cross_entropy(model(x), torch.tensor([int(labels[i])]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item()
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "train_loss": total / N_BAGS,
    }


def run(names: list[str]) -> list[dict]:
    e, rss = _common.run_measured([sys.executable, __file__, "eosin"])
    b, base_rss = _common.run_measured([sys.executable, __file__, "baseline"])
    return [
        {
            "bench": "mil-epoch",
            "unit": "s",
            "eosin": round(e["seconds"], 2),
            "baseline": "plain torch ABMIL loop",
            "baseline_value": round(b["seconds"], 2),
            "ratio": round(e["seconds"] / b["seconds"], 3),
            "eosin_cpu_s": round(e["cpu_seconds"], 2),
            "baseline_cpu_s": round(b["cpu_seconds"], 2),
            "peak_rss_mb": round(rss, 1),
            "baseline_peak_rss_mb": round(base_rss, 1),
            "bags": N_BAGS,
            "instances": N_INSTANCES,
            "features": N_FEATURES,
            "data": "random, generated on the fly per bag",
        }
    ]


if __name__ == "__main__":
    side = {"eosin": eosin_side, "baseline": baseline_side}[sys.argv[1]]
    print(json.dumps(side()))

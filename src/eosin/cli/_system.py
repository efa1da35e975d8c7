"""``eosin info --system``: this machine as the speed decisions see it, and the decisions measured here."""

from __future__ import annotations

import click

from eosin.cli._common import echo_json


def system_record() -> dict:
    """CPU, cores, GPU, library versions, the precisions ``auto`` may try, and the cached decisions."""
    import torch

    from eosin._calibrate import cached_decisions, calibration_dir, machine_key
    from eosin._device import cpu_has_native_bf16, precision_candidates, select_device

    dev = select_device("auto")
    return {
        "machine": machine_key(dev),
        "device": str(dev),
        "native_bf16": cpu_has_native_bf16(),
        "cuda": torch.cuda.is_available(),
        "auto_candidates": precision_candidates(dev, "auto"),
        "calibration_dir": str(calibration_dir()),
        "decisions": [
            {
                "task": d.get("task"),
                "model": (d.get("key") or {}).get("model"),
                "device": (d.get("key") or {}).get("device"),
                "input": (d.get("key") or {}).get("input"),
                "batch_size": (d.get("key") or {}).get("batch_size"),
                "date": d.get("date"),
                **{
                    k: v
                    for k, v in (d.get("decision") or {}).items()
                    if k in ("precision", "runtime", "timings_ms", "rejected")
                },
            }
            for d in cached_decisions()
        ],
    }


def describe_system(as_json: bool) -> None:
    record = system_record()
    if as_json:
        echo_json(record)
        return
    m = record["machine"]
    lines = [
        click.style("this machine", bold=True),
        f"  {'cpu':<12} {m['cpu']} ({m['cores']} usable cores, torch threads {m['torch_threads']})",
        f"  {'bf16':<12} {'native bfloat16 instructions' if record['native_bf16'] else 'not native'}",
        f"  {'gpu':<12} {m.get('gpu', 'none')}",
        f"  {'libraries':<12} torch {m['torch']}, onnxruntime {m['onnxruntime'] or 'not installed'}",
        f"  {'auto tries':<12} {', '.join(record['auto_candidates'])} on {record['device']}",
        f"  {'decisions':<12} {len(record['decisions'])} cached in {record['calibration_dir']}",
    ]
    for d in record["decisions"]:
        times = ", ".join(
            f"{k} {v:g}" if v is not None else f"{k} -" for k, v in (d.get("timings_ms") or {}).items()
        )
        lines.append(
            f"    {d['task']:<10} {d['model']} {d['input']} batch {d['batch_size']} on {d['device']}: "
            f"{d.get('runtime')}-{d.get('precision')}" + (f"  (ms/item: {times})" if times else "")
        )
    click.echo("\n".join(lines))

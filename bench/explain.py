"""Benchmark: seconds per (unit, image) of each attribution method, against the audit's forward.

For efficientnet_lite0 (its weights) on ``--n`` images of ``--images`` (their Chinese probes,
redrawn as ``wmprobe explain`` draws them), in alternating rounds in this one process:

- the audit's forward pass: one batch through the model with the audit's hooks (logits and
  features, reduced as the audit reduces them, under ``inference_mode``), seconds per frame;
- each method of :class:`wmprobe.attribution.maps.UnitAttributor` on the same batch for one
  logit and one feature unit: seconds per map (one unit on one image).

``wmprobe explain`` makes 2 maps per (unit, image) (probe and clean), 3 with a placebo audited,
so a (unit, image) costs 2-3 times the per-map figure. The ratio per method is its seconds per
map over the forward's seconds per frame, per round and as the median over rounds.

Run: ``PYTHONPATH=src python bench/explain.py [--n 8] [--rounds 2] [--ig-steps 16]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from wmprobe.attribution.maps import METHODS, UnitAttributor
from wmprobe.models import LayerTaps, load_model, resolve_layers
from wmprobe.probes.images import load_frame, scan_folder
from wmprobe.probes.scenario import Scenario

UNITS = {"logits": 478, "features": 775}  # carton; the top feature unit of the Chinese audit


def frames(folder: Path, n: int) -> np.ndarray:
    chinese = Scenario.preset("chinese")
    out = []
    for record in scan_folder(folder, limit=n).records:
        drawn = chinese.draw(load_frame(record.path), seed=0, image_id=record.image_id)
        out.append(np.asarray(drawn.image, dtype=np.uint8))
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/data/imagenet-samples"))
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ig-steps", type=int, default=16)
    args = parser.parse_args()
    model = load_model("efficientnet_lite0", device="cpu")
    batch = frames(args.images, args.n)
    n = len(batch)
    layers = resolve_layers(model, ["logits", "features"])
    attributors = {layer: UnitAttributor(model, layer, ig_steps=args.ig_steps) for layer in UNITS}
    x = attributors["logits"].inputs(batch)
    print(f"efficientnet_lite0, {n} images, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    ratios: dict[str, list[float]] = {}
    for r in range(args.rounds):
        start = time.perf_counter()
        with LayerTaps(model, layers) as taps, torch.inference_mode():
            taps.run(x)
        forward = (time.perf_counter() - start) / n
        line = [f"round {r + 1}: forward {forward * 1000:.0f} ms/frame"]
        for layer, unit in UNITS.items():
            att = attributors[layer]
            for method in METHODS:
                if not att.supports(method):
                    continue
                start = time.perf_counter()
                att.maps(batch, unit, method)
                per_map = (time.perf_counter() - start) / n
                key = f"{method} ({layer})"
                ratios.setdefault(key, []).append(per_map / forward)
                line.append(f"{key} {per_map:.3f} s/map = {per_map / forward:.1f}x")
        print("; ".join(line))
    print("median over rounds, seconds per map / forward seconds per frame:")
    for key, values in ratios.items():
        print(f"  {key:22s} {statistics.median(values):6.1f}x")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

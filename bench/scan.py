"""Benchmark: `wmprobe scan` against a bare forward of the same network; a 200k-image scan's RSS.

1. Throughput, for each packaged detector asked for (default: ``default``, the map head on
   efficientnet_lite0 at 320 px, and ``linear_probe``, pooled lite0 features at 224 px): images/s
   of the whole scan (streaming the folder, reading and resizing the files, the forward pass up to
   the detector's layer, the head, the per-chunk cache writes and the score tables; no contact
   sheet or page: ``top=0``) into a fresh folder, against a bare forward of the same network
   (the same layer, input size, batch size and threads) on the same images already decoded into
   one tensor, in alternating rounds in this one process. Every detector scores the whole image
   and its regions from one forward per image (a map detector's regions are the locations of its
   feature map), so "forwards per image" is 1 for both the whole-image and the region scores.
2. Peak RSS of a subprocess that scans N (default 200,000) small generated PNG files (48x48,
   written under a temporary folder and deleted after) with a ``units`` detector on a tiny conv
   net (so that it finishes in minutes here), against that process's own RSS after loading the
   model and scoring one batch (VmHWM from /proc).

Run: ``PYTHONPATH=src python bench/scan.py --images DIR`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wmprobe.extraction._cpu import inference_scope
from wmprobe.scanning.backbone import FeatureTap
from wmprobe.scanning.detector import load_detector
from wmprobe.scanning.files import iter_images, read_square
from wmprobe.scanning.run import scan


def throughput(images: Path, names: list[str], n: int, rounds: int, batch_size: int) -> None:
    paths = list(itertools.islice(iter_images(images), n))
    sub = Path(tempfile.mkdtemp(prefix="wm-bench-imgs-"))
    for i, p in enumerate(paths):  # the same n files for both sides
        os.symlink(os.path.abspath(p), sub / f"{i:06d}{Path(p).suffix}")
    try:
        for name in names:
            det = load_detector(name)
            tap = FeatureTap(det.model, det.layer, device="cpu")
            frames = np.stack([read_square(p, det.input_size) for p in paths])
            ratios = []
            for r in range(rounds):
                out = Path(tempfile.mkdtemp(prefix="wm-bench-scan-"))
                t0 = time.perf_counter()
                scan(sub, out, detector=det, top=0, batch_size=batch_size, device="cpu")
                t_scan = time.perf_counter() - t0
                shutil.rmtree(out)
                t0 = time.perf_counter()
                with torch.inference_mode(), inference_scope() as scope:  # the scan's settings
                    for s in range(0, len(frames), batch_size):
                        tap(frames[s : s + batch_size])
                        scope.step()
                t_bare = time.perf_counter() - t0
                ratios.append(t_bare / t_scan)
                print(
                    f"{name} round {r + 1}: scan {n / t_scan:.2f} img/s, bare forward "
                    f"{n / t_bare:.2f} img/s, ratio {t_bare / t_scan:.3f}",
                    flush=True,
                )
            print(
                f"{name}: {det.kind} on {det.model} {det.layer} at {det.input_size} px, "
                f"1 forward per image (whole image and regions); scan/bare ratio median "
                f"{float(np.median(ratios)):.3f} over {rounds} rounds",
                flush=True,
            )
    finally:
        shutil.rmtree(sub)


_CHILD = r"""
import os, sys, time
import numpy as np, torch
from torch import nn
from wmprobe.models.registry import ModelSpec, register_model
from wmprobe.scanning.detector import Detector
from wmprobe.scanning.run import scan
from wmprobe.extraction._cpu import inference_scope
from wmprobe.scanning.backbone import FeatureTap

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2)
        self.fc = nn.Linear(16, 4)
    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

register_model(ModelSpec(name="bench_tiny", build=lambda p, a: Tiny(), input_size=48,
                         source="test"))
state = {"mean": torch.zeros(16, dtype=torch.float64), "scale": torch.ones(16, dtype=torch.float64),
         "units": torch.arange(4), "sign": torch.ones(4, dtype=torch.float64),
         "d": torch.ones(4, dtype=torch.float64)}
det = Detector("units", "bench_tiny", "features", 48, state, calibration=np.linspace(0, 1, 200))
det.score(FeatureTap("bench_tiny", "features", device="cpu")(np.zeros((64, 48, 48, 3), np.uint8)))
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
base = hwm()
t = time.perf_counter()
res = scan(sys.argv[1], sys.argv[2], detector=det, top=48, batch_size=64, device="cpu")
print(f"RESULT {len(res.table)} {time.perf_counter() - t:.1f} {base} {hwm()}")
"""


def rss(n: int) -> None:
    import io

    from PIL import Image

    root = Path(tempfile.mkdtemp(prefix="wm-bench-200k-"))
    try:
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        tiles = []
        for _ in range(16):  # 16 encoded images, written under distinct names
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(buf, "PNG")
            tiles.append(buf.getvalue())
        for i in range(n):
            folder = root / f"d{i // 5000:03d}"
            if i % 5000 == 0:
                folder.mkdir()
            (folder / f"{i:07d}.png").write_bytes(tiles[i % 16])
        print(f"generated {n} files in {time.perf_counter() - t0:.1f} s", flush=True)
        out = root.with_name(root.name + "-out")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(root), str(out)],
            capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
        _, scored, secs, base, peak = line.split()
        print(
            f"scanned {int(scored):,} images in {float(secs):.0f} s; RSS after the model and one "
            f"batch {int(base) / 2**20:.0f} MiB, peak {int(peak) / 2**20:.0f} MiB, "
            f"peak above the model {(int(peak) - int(base)) / 2**20:.0f} MiB",
            flush=True,
        )
        shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, help="Folder of real images for the throughput.")
    parser.add_argument("--detectors", default="default,linear_probe")
    parser.add_argument("--n", type=int, default=96, help="Images per throughput round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rss-images", type=int, default=200_000, help="0: skip the RSS part.")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load: {os.getloadavg()}", flush=True)
    if args.rss_images:
        rss(args.rss_images)
    if args.images:
        throughput(args.images, args.detectors.split(","), args.n, args.rounds, args.batch_size)


if __name__ == "__main__":
    main()

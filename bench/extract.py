"""Benchmark: the audit path against the bare model, and the memory of a 50k-image audit.

1. For efficientnet_lite0 (its weights) and a random-init resnet50: images/s of the whole audit
   path (``extract`` from image files: reading, framing, drawing the probes in DataLoader workers,
   the forward pass with hooks, cache writes to a fresh cache) and of a bare ``model(x)`` on the
   same preprocessed tensors (same batch size, same threads, same malloc settings), measured in
   alternating rounds in this one process; their ratio per round and over all rounds. Each
   audit round pays the fixed costs of a run (a fresh cache, starting the workers, waiting for
   the first batch: about 0.3 s here), so the default 192 images (a fifth of the paper's 998)
   keep those from dominating a fast model's round; ``--n`` changes it.
2. Peak RSS of a subprocess that audits 50,000 synthetic images (16 small JPEG files repeated
   under distinct ids, so each gets its own probes) with a tiny model (logits and features,
   cached, two scenarios by default so that it takes minutes), against that process's own RSS
   after loading the model and running it once on a batch (VmHWM from /proc, which is the
   process's own; ru_maxrss would start at the parent's peak), and the largest DataLoader
   worker's. Sampled peaks split anonymous memory from memory-mapped cache pages. It runs
   first, while this process is still small.

Run: ``PYTHONPATH=src python bench/extract.py`` (``--help`` for sizes). An image counts once with
its probes: one image = the clean frame and one frame per scenario.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from wmprobe.extraction._cpu import inference_scope
from wmprobe.extraction.activations import default_workers, extract
from wmprobe.extraction.cache import ActivationCache
from wmprobe.extraction.chunks import ExtractionPlan, _collate, _ProbeDataset, as_frames, plan_tasks
from wmprobe.models import load_model
from wmprobe.models.registry import ModelSpec, register_model
from wmprobe.probes.artifacts import PAPER_SCENARIOS
from wmprobe.probes.images import ImageRecord, ImageSet, scan_folder
from wmprobe.probes.scenario import Scenario

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-samples"


def _records(images: Path | None, n: int, tmp: Path) -> tuple[list[ImageRecord], str]:
    if images is not None and images.is_dir():
        return scan_folder(images, limit=n).records, str(images)
    folder = tmp / "synthetic"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):  # ImageNet-like sizes, JPEG
        pixels = rng.integers(0, 256, size=(375, 500, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i:04d}.jpg", quality=90)
    return scan_folder(folder).records, f"{n} synthetic 500x375 JPEGs (no {images})"


def _frames(model, records, scenarios, batch_size, seed=0):
    """The preprocessed input tensors the audit path feeds the model, pass by pass."""
    plan = ExtractionPlan(tuple(scenarios), (), seed, "mean", None, batch_size, len(records))
    tasks = plan_tasks(records, len(records), len(scenarios) + 1, ["logits"], None)
    dataset = _ProbeDataset(tasks, plan)
    out = []
    for b0, b1 in tasks[0].batches(batch_size):
        batch = _collate([dataset[(0, row)] for row in range(b0, b1)])
        for j in range(len(scenarios) + 1):  # one variant per pass, as the audit path
            out.append(model.preprocess(as_frames(batch["pixels"][:, j])))
    return out


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the DataLoader workers)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _bare_forward(model, inputs, threads) -> tuple[float, float]:
    cpu, start = _cpu_seconds(), time.perf_counter()
    with inference_scope(threads), torch.inference_mode():
        for x in inputs:
            model.module(x)
    return time.perf_counter() - start, _cpu_seconds() - cpu


def _audit_path(
    model, records, scenarios, batch_size, workers, threads, tmp
) -> tuple[float, float]:
    cache_dir = tempfile.mkdtemp(dir=tmp)
    cpu, start = _cpu_seconds(), time.perf_counter()
    extract(
        model,
        records,
        scenarios,
        layers=["logits", "features"],
        batch_size=batch_size,
        num_workers=workers,
        progress=False,
        cache=ActivationCache(cache_dir),
        threads=threads,
    )
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    shutil.rmtree(cache_dir)
    return seconds, cpu


def ratio_bench(args, tmp: Path) -> None:
    scenarios = [Scenario.preset(s) for s in PAPER_SCENARIOS]
    threads = args.threads or torch.get_num_threads()
    print(
        f"ratio bench: {len(scenarios)} scenarios ({len(scenarios) + 1} frames per image), batch "
        f"{args.batch_size} images, torch threads {threads}, DataLoader workers "
        f"{default_workers() if args.workers is None else args.workers}, {os.cpu_count()} cpus, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; {args.rounds} rounds "
        "of audit path and bare forward, alternating (ABBA)"
    )
    for name, pretrained, n in (
        ("efficientnet_lite0", True, args.n),
        ("resnet50", False, args.n_big),
    ):
        records, source = _records(args.images, n, tmp)
        torch.manual_seed(0)
        model = load_model(name, pretrained=pretrained, device="cpu")
        inputs = _frames(model, records, scenarios, args.batch_size)
        _bare_forward(model, inputs[:1], threads)  # warm-up
        model.weights_hash()  # computed once per model in an audit; not part of each round
        audit, forward = [], []
        for r in range(args.rounds):
            steps = [("audit", audit), ("forward", forward)]
            for what, sink in steps if r % 2 == 0 else steps[::-1]:
                if what == "audit":
                    sink.append(
                        _audit_path(
                            model, records, scenarios, args.batch_size, args.workers, threads, tmp
                        )
                    )
                else:
                    sink.append(_bare_forward(model, inputs, threads))
        wall = [f[0] / a[0] for f, a in zip(forward, audit, strict=True)]
        cpu = [f[1] / a[1] for f, a in zip(forward, audit, strict=True)]
        aw, fw = sum(a[0] for a in audit), sum(f[0] for f in forward)
        ac, fc = sum(a[1] for a in audit), sum(f[1] for f in forward)
        k = len(records) * args.rounds
        print(f"{name} ({len(records)} images from {source}, load avg {os.getloadavg()[0]:.1f}):")
        print(
            f"  wall: audit {k / aw:.2f} img/s, forward {k / fw:.2f} img/s, ratio {fw / aw:.3f} "
            f"(per round {' '.join(f'{x:.3f}' for x in wall)}, "
            f"median {statistics.median(wall):.3f})"
        )
        print(
            f"  cpu:  audit {k / ac:.2f} img/cpu-s, forward {k / fc:.2f} img/cpu-s, ratio "
            f"{fc / ac:.3f} (per round {' '.join(f'{x:.3f}' for x in cpu)})",
            flush=True,
        )


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 8, stride=8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 1000)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def _maxrss_mib(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def _status_mib(field: str) -> float:
    """A field of /proc/self/status in MiB (VmHWM: this process's own peak RSS; unlike
    ru_maxrss it is not inherited from the parent across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


class _RssSampler(threading.Thread):
    """Samples RssAnon and RssFile (memory-mapped cache pages, which the kernel can drop) of
    this process every 50 ms and keeps the largest of each."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = {"RssAnon": 0.0, "RssFile": 0.0}
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.05):
            for field in self.peak:
                self.peak[field] = max(self.peak[field], _status_mib(field))


def rss_child(args) -> None:
    """In a subprocess: audit ``args.rss_images`` synthetic images, print the RSS figures."""
    from wmprobe.auditing.run import audit

    torch.manual_seed(0)
    register_model(ModelSpec(name="bench_tiny", build=lambda p, d: _Tiny(), input_size=224))
    tmp = Path(tempfile.mkdtemp(prefix="wmprobe-rss-"))
    try:
        folder = tmp / "files"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(16):
            pixels = rng.integers(0, 256, size=(256, 320, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"f{i:02d}.jpg", quality=90)
        files = sorted(folder.iterdir())
        records = [
            ImageRecord(path=files[i % len(files)], image_id=f"img{i:06d}")
            for i in range(args.rss_images)
        ]
        image_set = ImageSet(root=folder, records=records)
        model = load_model("bench_tiny", device="cpu")
        with torch.inference_mode():
            model.module(model.preprocess(torch.zeros(80, 3, 224, 224, dtype=torch.uint8)))
        base = _status_mib("VmHWM")
        base_anon = _status_mib("RssAnon")
        sampler = _RssSampler()
        sampler.start()
        start = time.perf_counter()
        result = audit(
            image_set,
            model="bench_tiny",
            scenarios=args.rss_scenarios.split(","),
            layers=["logits", "features"],
            cache=tmp / "cache",
            num_workers=args.rss_workers,
            progress=False,
        )
        seconds = time.perf_counter() - start
        sampler.done.set()
        sampler.join()
        peak = _status_mib("VmHWM")
        workers = _maxrss_mib(resource.RUSAGE_CHILDREN)
        print(
            f"rss bench: {len(result.activations.image_ids)} images ({len(files)} files) x "
            f"{len(result.activations.variants)} variants ({args.rss_scenarios}), logits and "
            f"features, table {len(result.table)} rows, {args.rss_workers} workers, "
            f"{seconds:.0f} s; RSS after loading and running the model {base:.0f} MiB, peak "
            f"{peak:.0f} MiB, peak above the model's own {peak - base:.0f} MiB; largest worker "
            f"peak {workers:.0f} MiB",
            flush=True,
        )
        print(
            f"rss bench: sampled peaks: anonymous {sampler.peak['RssAnon']:.0f} MiB (after loading "
            f"{base_anon:.0f}, +{sampler.peak['RssAnon'] - base_anon:.0f}), file-backed "
            f"(memory-mapped cache, reclaimable) {sampler.peak['RssFile']:.0f} MiB",
            flush=True,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=SAMPLES, help="folder of real images")
    parser.add_argument("--n", type=int, default=192, help="images per round, efficientnet_lite0")
    parser.add_argument("--n-big", type=int, default=32, help="images per round, resnet50")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None, help="default: wmprobe's")
    parser.add_argument("--threads", type=int, default=None, help="default: torch's")
    parser.add_argument("--rss-images", type=int, default=50_000)
    parser.add_argument("--rss-scenarios", default="latin,numerals", help="(two: minutes, not ten)")
    parser.add_argument("--rss-workers", type=int, default=2, help="DataLoader workers, RSS run")
    parser.add_argument("--skip-ratio", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args)
        return
    if not args.skip_rss:  # first, while this process is small: ru_maxrss passes to children
        argv = [sys.executable, __file__, "--rss-child", "--rss-images", str(args.rss_images)]
        argv += ["--rss-scenarios", args.rss_scenarios, "--rss-workers", str(args.rss_workers)]
        subprocess.run(argv, check=True)
    if not args.skip_ratio:
        with tempfile.TemporaryDirectory(prefix="wmprobe-bench-") as tmp:
            ratio_bench(args, Path(tmp))


if __name__ == "__main__":
    main()

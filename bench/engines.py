"""The same audit on the local engine (1 CPU), a one-node Ray (1 CPU) and two 1-CPU Ray nodes.

Measures the extraction of efficientnet_lite0 on the clean and Chinese frames of ``--n`` ImageNet
samples (chunks of ``--chunk`` images, batches of 16), each engine on an empty cache after a
warm-up run on other images that gives every worker a chunk (workers started, model loaded: the
steady state is compared, not Ray's start-up, which is printed apart). The local engine runs with
1 torch thread and reads images inline, as each Ray worker does.

What two 1-CPU nodes can reach here is bounded by the machine: the bench also times two local
1-CPU audits at once, in two processes on half of the images each, and compares that with one
(on a virtual machine whose two CPUs share a core, or a busy host, it is below 2).

The engines take turns: each of ``--rounds`` rounds times all four (local, one-node Ray, two-node
Ray, two local at once), each Ray started for its turn and stopped after it, so that the ratios of
one round compare runs minutes apart at most (this machine's speed drifts by 10-20 % over minutes:
its host is shared). Prints every run, each round's ratios, their median over the rounds and the
ratios of the best runs, and checks that all three engines wrote the same activations
(byte-identical units.csv, every round); the load is printed beside the figures.

Everything runs in a network namespace of its own with only loopback where this machine can make
one (``unshare --net``; the bench starts itself again there), so that the two-node cluster talks
over 127.0.0.1 and not over the machine's network address (see
:mod:`wmprobe.extraction.engines.cluster`); the first line says which.

    PYTHONPATH=src python bench/engines.py [--n 896] [--images ../shared/data/imagenet-samples]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wmprobe.auditing.run import audit
from wmprobe.extraction.cache import ActivationCache
from wmprobe.extraction.engines import LocalEngine
from wmprobe.extraction.engines.cluster import (
    LocalCluster,
    in_loopback_only_namespace,
    loopback_only,
)
from wmprobe.extraction.engines.ray import RayEngine
from wmprobe.probes.images import ImageSet, scan_folder

SHARED = os.environ.get("WMPROBE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared/data")
SAMPLES = Path(SHARED) / "imagenet-samples"
STORE = 200 << 20


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _run(engine, images: ImageSet, tmp: Path, chunk: int) -> tuple[float, bytes]:
    """Seconds of one audit on an empty cache, and its units.csv."""
    folder = Path(tempfile.mkdtemp(dir=tmp))
    start = time.perf_counter()
    result = audit(
        images,
        scenarios=["chinese"],
        num_workers=0,
        threads=1,
        progress=False,
        cache=ActivationCache(folder / "cache", chunk_size=chunk),
        engine=engine,
    )
    seconds = time.perf_counter() - start
    result.save(folder / "run")
    tables = (folder / "run" / "units.csv").read_bytes()
    shutil.rmtree(folder)
    return seconds, tables


def _timed(name: str, engine, warm: ImageSet, images: ImageSet, tmp: Path, chunk: int, k: int):
    """Images per second of one audit after a warm-up run (printed), and its units.csv."""
    start = time.perf_counter()
    _run(engine, warm, tmp, chunk)
    warm_s = time.perf_counter() - start
    seconds, tables = _run(engine, images, tmp, chunk)
    rate = len(images.records) / seconds
    print(
        f"{name:28s} {rate:6.2f} img/s  ({seconds:6.1f} s; round {k + 1}, warm-up "
        f"{warm_s:5.1f} s)  {_load()}",
        flush=True,
    )
    return rate, tables


_HALF = """
import sys, time
from pathlib import Path
sys.path[:0] = {path!r}
from bench.engines import _run
from wmprobe.extraction.engines import LocalEngine
from wmprobe.probes.images import ImageSet, scan_folder
every = scan_folder({root!r}, limit={limit})
part = ImageSet(every.root, every.records[{start}:{stop}], {{}})
warm = ImageSet(every.root, every.records[{n}:], {{}})
engine, tmp = LocalEngine(threads=1, loader_workers=0), Path({tmp!r})
_run(engine, warm, tmp, {chunk})
Path({ready!r}).touch()
while not Path({go!r}).exists():
    time.sleep(0.005)
print("SECONDS", _run(engine, part, tmp, {chunk})[0])
"""


def _two_local_at_once(images: ImageSet, n_warm: int, tmp: Path, chunk: int, k: int) -> float:
    """Images per second of two local 1-CPU audits at once, on half of the images each (two
    processes started together after their warm-up; the slower one ends the run)."""
    n = len(images.records)
    folder = Path(tempfile.mkdtemp(dir=tmp))
    go = folder / "go"
    halves = [(0, n // 2), (n // 2, n)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _HALF.format(
                path=[str(Path(__file__).resolve().parents[1]), *sys.path],
                root=str(images.root), limit=n + n_warm, start=a, stop=b, n=n,
                tmp=str(folder), chunk=chunk, ready=str(folder / f"ready{i}"), go=str(go),
            )],
            stdout=subprocess.PIPE, text=True,
        )
        for i, (a, b) in enumerate(halves)
    ]  # fmt: skip
    while not all((folder / f"ready{i}").exists() for i in range(2)):
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a local audit of the two-at-once run stopped early")
        time.sleep(0.01)
    go.touch()
    seconds = [float(p.communicate()[0].split("SECONDS")[-1]) for p in procs]
    rate = n / max(seconds)
    print(
        f"{'two local 1-CPU at once':28s} {rate:6.2f} img/s  ({max(seconds):6.1f} s; round "
        f"{k + 1}; halves {seconds[0]:.1f} s and {seconds[1]:.1f} s)  {_load()}",
        flush=True,
    )
    shutil.rmtree(folder)
    return rate


RATIOS = [
    ("one-node Ray / local", "ray1", "local", "target >= 0.85"),
    ("two nodes / one node", "ray2", "ray1", "target >= 1.7"),
    ("machine: two local / one", "pair", "local", "what two nodes can reach here"),
    ("two nodes / two local", "ray2", "pair", ""),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=SAMPLES)
    parser.add_argument("--n", type=int, default=896, help="images measured per engine")
    parser.add_argument(
        "--warm", type=int, default=64, help="images of the warm-up run (a chunk for every worker)"
    )
    parser.add_argument("--chunk", type=int, default=16, help="images per chunk (task)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (engines take turns)")
    args = parser.parse_args()
    isolated = in_loopback_only_namespace()
    if not isolated and (command := loopback_only([sys.executable, *sys.argv])) is not None:
        os.execvp(command[0], command)  # the same bench, in a namespace with only loopback
    network = "loopback only" if isolated else "this machine's network (no namespace here)"
    every = scan_folder(args.images, limit=args.n + args.warm)
    warm = ImageSet(every.root, every.records[args.n :], {})
    images = ImageSet(every.root, every.records[: args.n], {})
    print(
        f"efficientnet_lite0, chinese (2 frames per image), {args.n} images, chunks of "
        f"{args.chunk}, {os.cpu_count()} CPUs on this machine, {network}; {_load()}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="wmbench"))
    runs: dict[str, list[float]] = {"local": [], "ray1": [], "ray2": [], "pair": []}
    tables: set[bytes] = set()  # every run's units.csv: one when all engines agree
    try:
        data = (warm, images, tmp, args.chunk)
        local = LocalEngine(threads=1, loader_workers=0)
        for k in range(args.rounds):
            rate, csv = _timed("local, 1 CPU", local, *data, k)
            runs["local"].append(rate)
            tables.add(csv)
            start = time.perf_counter()
            with RayEngine(num_cpus=1, object_store_memory=STORE) as one:
                print(f"  (one-node Ray started in {time.perf_counter() - start:.1f} s)")
                rate, csv = _timed("Ray, 1 node x 1 CPU", one, *data, k)
                runs["ray1"].append(rate)
                tables.add(csv)
            start = time.perf_counter()
            cluster = LocalCluster(nodes=2, cpus=1, store=STORE)
            with cluster:
                with RayEngine(cluster.address) as two:
                    two.wait_for_nodes(2)
                    print(f"  (two-node Ray started in {time.perf_counter() - start:.1f} s)")
                    rate, csv = _timed("Ray, 2 nodes x 1 CPU", two, *data, k)
                    runs["ray2"].append(rate)
                    tables.add(csv)
                two.ray.shutdown()  # leave the cluster before it stops (the next round's is new)
            runs["pair"].append(_two_local_at_once(images, args.warm, tmp, args.chunk, k))
            print(
                "  round " + str(k + 1) + ": "
                + ", ".join(f"{name} {runs[a][-1] / runs[b][-1]:.3f}" for name, a, b, _ in RATIOS),
                flush=True,
            )  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'':28s} {'median of rounds':>17s} {'best runs':>10s}")
    for name, a, b, note in RATIOS:
        median = statistics.median(x / y for x, y in zip(runs[a], runs[b], strict=True))
        best = max(runs[a]) / max(runs[b])
        print(f"{name + ':':28s} {median:17.3f} {best:10.3f}  {note}")
    print(f"units.csv identical on all three engines, every round: {len(tables) == 1}")


if __name__ == "__main__":
    main()

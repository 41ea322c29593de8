"""The same audit on the local engine (1 CPU), a one-node Ray (1 CPU) and two 1-CPU Ray nodes.

Measures the extraction of efficientnet_lite0 on the clean and Chinese frames of ``--n`` ImageNet
samples (chunks of ``--chunk`` images, batches of 16), each engine on an empty cache after a
warm-up run on other images that gives every worker a chunk (workers started, model loaded: the
steady state is compared, not Ray's start-up, which is printed apart). The local engine runs with
1 torch thread and reads images inline, as each Ray worker does. Each engine is timed
``--rounds`` times and its best round is its figure (every round is printed; the machine's other
work only ever slows a round down); the local engine is timed before and after the Ray runs.
Prints images per second and the ratios, and checks that all three wrote the same activations
(byte-identical units.csv); the load is printed beside the figures.

What two 1-CPU nodes can reach here is bounded by the machine: the bench also times two local
1-CPU audits at once, in two processes on half of the images each, right after the two-node Ray,
and prints how that compares with one (on a virtual machine whose two CPUs share a core, or a
busy host, it is well below 2).

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


def _measure(
    name: str, engine, warm: ImageSet, images: ImageSet, tmp: Path, chunk: int, rounds: int
):
    """The best of ``rounds`` timed runs after a warm-up (each printed), and the tables."""
    start = time.perf_counter()
    _run(engine, warm, tmp, chunk)
    warm_s = time.perf_counter() - start
    rates, tables = [], b""
    for k in range(rounds):
        seconds, tables = _run(engine, images, tmp, chunk)
        rates.append(len(images.records) / seconds)
        print(
            f"{name:28s} {rates[-1]:6.2f} img/s  ({seconds:6.1f} s; round {k + 1}"
            f"{f', warm-up {warm_s:5.1f} s' if k == 0 else ''})  {_load()}",
            flush=True,
        )
    return max(rates), tables


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


def _two_local_at_once(images: ImageSet, n_warm: int, tmp: Path, chunk: int, rounds: int) -> float:
    """Images per second of two local 1-CPU audits at once, on half of the images each (two
    processes started together after their warm-up; the slower one ends the round), best round."""
    n = len(images.records)
    rates = []
    for k in range(rounds):
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
        rates.append(n / max(seconds))
        print(
            f"{'two local 1-CPU at once':28s} {rates[-1]:6.2f} img/s  ({max(seconds):6.1f} s; "
            f"round {k + 1}; halves {seconds[0]:.1f} s and {seconds[1]:.1f} s)  {_load()}",
            flush=True,
        )
        shutil.rmtree(folder)
    return max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=SAMPLES)
    parser.add_argument("--n", type=int, default=896, help="images measured per engine")
    parser.add_argument(
        "--warm", type=int, default=64, help="images of the warm-up run (a chunk for every worker)"
    )
    parser.add_argument("--chunk", type=int, default=16, help="images per chunk (task)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per engine (best kept)")
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
    try:
        data = (warm, images, tmp, args.chunk, args.rounds)
        local = LocalEngine(threads=1, loader_workers=0)
        before, reference = _measure("local, 1 CPU (before)", local, *data)
        start = time.perf_counter()
        with RayEngine(num_cpus=1, object_store_memory=STORE) as one:
            print(f"  (one-node Ray started in {time.perf_counter() - start:.1f} s)")
            one_rate, one_tables = _measure("Ray, 1 node x 1 CPU", one, *data)
        start = time.perf_counter()
        cluster = LocalCluster(nodes=2, cpus=1, store=STORE)
        with cluster, RayEngine(cluster.address) as two:
            two.wait_for_nodes(2)
            print(f"  (two-node Ray started in {time.perf_counter() - start:.1f} s)")
            two_rate, two_tables = _measure("Ray, 2 nodes x 1 CPU", two, *data)
        pair_rate = _two_local_at_once(images, args.warm, tmp, args.chunk, args.rounds)
        after, _ = _measure("local, 1 CPU (after)", local, *data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    local_rate = max(before, after)
    print(f"one-node Ray / local:        {one_rate / local_rate:.2f}  (target >= 0.85)")
    print(f"two nodes / one node:        {two_rate / one_rate:.2f}  (target >= 1.7)")
    print(
        f"machine: two local / one:    {pair_rate / local_rate:.2f}  (two 1-CPU processes at once "
        "against one: what two nodes can reach here)"
    )
    print(f"two nodes / two local:       {two_rate / pair_rate:.2f}")
    same = one_tables == reference and two_tables == reference
    print(f"units.csv identical on all three engines: {same}")


if __name__ == "__main__":
    main()

"""The engine interface, the local engine, the Ray pool's plan, and wmprobe without Ray."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wmprobe.errors import InvalidArgumentError
from wmprobe.extraction.engines import Job, LocalEngine, get_engine
from wmprobe.extraction.engines.ray import plan_pool

REPO = Path(__file__).resolve().parents[2]


def _node(node_id: str, cpus: float, gpus: float = 0) -> dict:
    return {"NodeID": node_id, "Alive": True, "Resources": {"CPU": cpus, "GPU": gpus}}


def test_the_pool_never_takes_every_cpu_of_a_node_but_a_one_cpu_node_works():
    slots = plan_pool([_node("a", 1), _node("b", 2), _node("c", 8), _node("g", 8, 1)], gpu=False)
    per_node = {n: sum(1 for node, _ in slots if node == n) for n in "abcg"}
    assert per_node == {"a": 1, "b": 1, "c": 7, "g": 7}  # a CPU job uses a GPU node's CPUs
    assert {(r.cpus, r.gpus, r.device, r.loader_workers) for _, r in slots} == {(1, 0, "cpu", 0)}
    assert len(plan_pool([_node("c", 8)], cpus_per_worker=2, gpu=False)) == 3  # 7 spare, 2 each


def test_a_gpu_job_gets_one_actor_per_gpu_sharing_the_nodes_spare_cpus():
    slots = plan_pool([_node("g", 16, 2), _node("c", 8)], gpu=True)
    assert [(n, r.cpus, r.gpus, r.device) for n, r in slots] == [
        ("g", 7, 1, "cuda"),
        ("g", 7, 1, "cuda"),
    ]  # CPU-only nodes take no part: the job's device (and cache key) is CUDA


def test_the_local_engine_runs_setup_once_and_tags_results_with_their_task():
    setups = []

    def setup(resources):
        setups.append(resources)
        return 10

    job = Job(key="k", setup=setup, run=lambda state, tasks, res: (state + t for t in tasks))
    engine = get_engine("local", threads=1)
    assert isinstance(engine, LocalEngine)
    assert list(engine.map_chunks(job, [1, 2, 3])) == [(0, 11), (1, 12), (2, 13)]
    assert len(setups) == 1 and setups[0].cpus == 1


def test_unknown_engines_and_misplaced_addresses_are_refused():
    with pytest.raises(InvalidArgumentError, match="'spark'"):
        get_engine("spark")
    with pytest.raises(InvalidArgumentError, match="ray"):
        get_engine("local", address="127.0.0.1:6379")


_NO_RAY = """
import importlib.abc, sys
class _NoRay(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r} (hidden by the test)")
        return None
sys.meta_path.insert(0, _NoRay())
sys.path[:0] = [REPO_SRC, REPO]
"""


def _without_ray(code: str, *args: str) -> subprocess.CompletedProcess:
    prelude = _NO_RAY.replace("REPO_SRC", repr(str(REPO / "src"))).replace("REPO", repr(str(REPO)))
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_wmprobe_and_the_local_engine_work_without_ray(image_dir, tmp_path):
    done = _without_ray(
        """
        import pkgutil, importlib
        import wmprobe
        for mod in pkgutil.walk_packages(wmprobe.__path__, "wmprobe."):
            if mod.name != "wmprobe.__main__":  # (it runs the command)
                importlib.import_module(mod.name)  # no module needs Ray to import
        import tests._counting
        from wmprobe.cli import main
        main()
        """,
        *("audit", "--model", "counting_net", "--images", str(image_dir), "--limit", "3"),
        *("--scenarios", "latin", "--layers", "logits", "--no-cache", "--workers", "0"),
        *("--out", str(tmp_path / "run"), "--quiet"),
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "units.csv").is_file()
    refused = _without_ray(
        "import tests._counting\nfrom wmprobe.cli import main\nmain()\n",
        *("audit", "--model", "counting_net", "--images", str(image_dir), "--limit", "3"),
        *("--out", str(tmp_path / "ray"), "--engine", "ray"),
    )
    assert refused.returncode == 1
    assert "pip install 'wmprobe[ray]'" in refused.stderr
    assert "Traceback" not in refused.stderr

"""The Ray engine gives the tables of the local engine, byte for byte (issue 15, point 5).

Every test starts its own Ray on 127.0.0.1 (small object stores, no dashboard) and stops what it
started by its own handles: the engine's ``close`` for a Ray started by ``ray.init``, and the
process groups of the ``ray start --block`` nodes of the two-node cluster
(:class:`~wmprobe.extraction.engines.cluster.LocalCluster`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray engine's tests need the wmprobe[ray] extra")

import tests._counting  # noqa: E402, F401 - registers counting_net (it can sleep per batch)
from wmprobe.auditing.run import audit  # noqa: E402
from wmprobe.extraction.cache import ActivationCache  # noqa: E402
from wmprobe.extraction.engines.cluster import LocalCluster, free_port  # noqa: E402
from wmprobe.extraction.engines.ray import RayEngine, RayUnavailableError  # noqa: E402

STORE = 80 * 1024 * 1024
pytestmark = pytest.mark.slow


def _units_csv(image_dir, out: Path, engine=None, **kw) -> bytes:
    """An audit of the tiny model (3 chunks of 4 images), its units.csv as bytes."""
    result = audit(
        image_dir,
        model=kw.pop("model", "tiny_test_net"),
        scenarios=["chinese", "null"],
        layers=["logits", "features"],
        batch_size=2,
        num_workers=0,
        progress=False,
        cache=ActivationCache(out / "cache", chunk_size=4),
        engine=engine,
        **kw,
    )
    result.save(out / "run")
    return (out / "run" / "units.csv").read_bytes()


@pytest.fixture(scope="module")
def local_tables(image_dir, tmp_path_factory) -> bytes:
    return _units_csv(image_dir, tmp_path_factory.mktemp("local"))


def test_local_ray_gives_the_local_engines_units_csv(image_dir, tmp_path, local_tables):
    with RayEngine(num_cpus=2, object_store_memory=STORE) as engine:
        assert ray.is_initialized()
        tables = _units_csv(image_dir, tmp_path, engine)
    assert not ray.is_initialized()  # the instance it started is stopped
    assert tables == local_tables


def test_a_worker_killed_mid_run_is_retried_to_the_same_tables(
    image_dir, tmp_path, monkeypatch, local_tables
):
    local = _units_csv(image_dir, tmp_path / "local", model="counting_net")
    monkeypatch.setenv("WMPROBE_TEST_DELAY", "0.4")  # workers inherit it: a run of ~5 s
    killed: list[int] = []
    with RayEngine(num_cpus=2, object_store_memory=STORE) as engine:

        def kill_one() -> None:
            while not (pids := engine.worker_pids()):  # answers once the actors are up
                time.sleep(0.05)
            pid = pids[0]
            time.sleep(1.5)  # inside its first chunks
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        killer = threading.Thread(target=kill_one, daemon=True)
        killer.start()
        tables = _units_csv(image_dir, tmp_path / "ray", engine, model="counting_net")
        killer.join(timeout=60)
        assert killed, "the worker was not killed during the run"
        assert engine.worker_pids(fresh=True)[0] != killed[0]  # Ray restarted the actor
    assert tables == local


def test_a_wrong_address_is_a_clear_error_naming_it():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(RayUnavailableError, match=address.replace(".", r"\.")):
        RayEngine(address)
    assert not ray.is_initialized()


@pytest.mark.skipif(
    os.environ.get("WMPROBE_RAY_MULTINODE") != "1",
    reason="a second `ray start --address=127.0.0.1:PORT` node reaches the head through this "
    "machine's network address, not loopback (Ray's resolve_ip_for_localhost rewrites "
    "127.0.0.1), and tests here may only talk over loopback; WMPROBE_RAY_MULTINODE=1 runs it",
)
def test_a_two_node_cluster_gives_the_local_engines_units_csv(image_dir, tmp_path, local_tables):
    with LocalCluster(nodes=2, cpus=1, store=STORE) as cluster:
        with RayEngine(cluster.address) as engine:
            engine.wait_for_nodes(2)
            tables = _units_csv(image_dir, tmp_path, engine)
            assert len(engine.started_workers()) == 2  # one per 1-CPU node
        assert not ray.is_initialized()
    assert tables == local_tables


_CHILD = """
import sys
import tests._counting
from wmprobe.auditing.run import audit
from wmprobe.extraction.cache import ActivationCache
from wmprobe.extraction.engines.ray import RayEngine
with RayEngine(num_cpus=2, object_store_memory={store}) as engine:
    result = audit({images!r}, model="counting_net", scenarios=["chinese", "null"],
                   layers=["logits", "features"], batch_size=2, progress=False,
                   cache=ActivationCache({cache!r}, chunk_size=4), engine=engine)
result.save({out!r})
print("frames", result.activations.frames_computed)
"""


def test_ctrl_c_stops_the_ray_run_and_the_rerun_resumes_from_the_cache(image_dir, tmp_path):
    local = _units_csv(image_dir, tmp_path / "local", model="counting_net")
    cache = tmp_path / "cache"
    code = _CHILD.format(store=STORE, images=str(image_dir), cache=str(cache), out=str(tmp_path))
    env = dict(os.environ, WMPROBE_TEST_DELAY="0.4")
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    child = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    while not list(cache.glob("activations/*/*/*/*/chunks/*.json")):  # a chunk is stored
        assert child.poll() is None and time.time() < deadline, child.communicate()
        time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode != 0 and b"KeyboardInterrupt" in err
    assert not (tmp_path / "units.csv").exists()
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    frames = int(done.stdout.split("frames")[-1])
    assert 0 < frames < 12 * 3  # only the chunks the first run did not finish
    assert (tmp_path / "units.csv").read_bytes() == local

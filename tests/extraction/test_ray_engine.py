"""The Ray engine gives the tables of the local engine, byte for byte (issue 15, point 5).

Every test starts its own Ray on 127.0.0.1 (small object stores, no dashboard) and stops what it
started by its own handles: the engine's ``close`` for a Ray started by ``ray.init``, and the
process groups of the ``ray start --block`` nodes of the two-node cluster
(:class:`~wmprobe.extraction.engines.cluster.LocalCluster`). The two-node tests run the cluster
and their driver in a network namespace of their own with only loopback, where Ray cannot
advertise the machine's network address (see :mod:`~wmprobe.extraction.engines.cluster`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray engine's tests need the wmprobe[ray] extra")

import tests._counting  # noqa: E402, F401 - registers counting_net (it can sleep per batch)
from wmprobe.auditing.run import audit  # noqa: E402
from wmprobe.errors import ImageChangedError  # noqa: E402
from wmprobe.extraction.cache import ActivationCache  # noqa: E402
from wmprobe.extraction.engines.base import Job  # noqa: E402
from wmprobe.extraction.engines.cluster import free_port, loopback_only  # noqa: E402
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


def test_a_worker_that_reads_other_bytes_than_the_driver_hashed_stops_the_run(image_dir, tmp_path):
    from tests.extraction.test_cache import with_wrong_sha1

    victim = sorted(p.name for p in image_dir.iterdir())[3]
    cache = with_wrong_sha1(ActivationCache(tmp_path / "cache", chunk_size=4), victim)
    changed = pytest.raises(ImageChangedError, match=f"{victim} is not the file that was hashed")
    with RayEngine(num_cpus=2, object_store_memory=STORE) as engine, changed:
        audit(image_dir, model="tiny_test_net", scenarios=["latin"], progress=False, cache=cache,
              engine=engine)  # fmt: skip


def _pids(state, tasks, resources) -> list[int]:
    return [os.getpid() for _ in tasks]


def test_the_last_tasks_go_to_idle_workers_not_behind_a_busy_one():
    job = Job(key="pids", setup=lambda resources: None, run=_pids)
    with RayEngine(num_cpus=3, object_store_memory=STORE) as engine:  # 2 workers of 1 CPU
        pids = dict(engine.map_chunks(job, [[0], [1]]))
        assert len(engine.started_workers()) == 2
    assert pids[0] != pids[1]  # not both queued on the first worker


def test_a_wrong_address_is_a_clear_error_naming_it():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(RayUnavailableError, match=address.replace(".", r"\.")):
        RayEngine(address)
    assert not ray.is_initialized()


_CLUSTER_CHILD = """
import json, threading, time
from pathlib import Path
import tests._counting
from wmprobe.auditing.run import audit
from wmprobe.extraction.cache import ActivationCache
from wmprobe.extraction.engines.cluster import LocalCluster, in_loopback_only_namespace
from wmprobe.extraction.engines.ray import RayEngine
assert in_loopback_only_namespace()
cache = Path({cache!r})
info = {{"left": None}}
with LocalCluster(cpus={cpus}, store={store}) as cluster, RayEngine(cluster.address) as engine:
    engine.wait_for_nodes({nodes})
    info["addresses"] = sorted(n["NodeManagerAddress"] for n in engine.alive_nodes())

    def leave():  # node 1 leaves while its actor runs a chunk
        while len(engine.started_workers()) < 2 or not engine.worker_pids():
            time.sleep(0.05)
        time.sleep(1.0)
        info["pids_before"] = engine.worker_pids()
        cluster.remove_node(1)
        info["left"] = time.time()

    if {leave}:
        threading.Thread(target=leave, daemon=True).start()
    result = audit({images!r}, model="counting_net", scenarios=["chinese", "null"],
                   layers=["logits", "features"], batch_size=2, progress=False,
                   cache=ActivationCache(cache, chunk_size=4), engine=engine)
    info["finished"] = time.time()
    info["workers"] = len(engine.started_workers())
    info["nodes_at_end"] = len(engine.alive_nodes())
result.save({out!r})
print("INFO" + json.dumps(info))
"""


def _on_a_loopback_cluster(image_dir, tmp_path, cpus, *, leave=False, env=()) -> dict:
    """Run an audit of counting_net on a LocalCluster of ``cpus`` nodes, cluster and driver in a
    network namespace of their own with only loopback; what the child saw."""
    code = _CLUSTER_CHILD.format(
        cache=str(tmp_path / "cache"), cpus=list(cpus), store=STORE, nodes=len(cpus),
        leave=leave, images=str(image_dir), out=str(tmp_path / "run"),
    )  # fmt: skip
    command = loopback_only([sys.executable, "-c", code])
    if command is None:
        pytest.skip(
            "this machine cannot make a network namespace (`unshare --net`), which keeps a "
            "multi-node Ray on loopback (Ray advertises the machine's network address otherwise)"
        )
    child_env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **dict(env))
    child_env.pop("RAY_ADDRESS", None)
    done = subprocess.run(command, env=child_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.split("INFO")[-1])


def test_a_two_node_cluster_gives_the_local_engines_units_csv(image_dir, tmp_path):
    local = _units_csv(image_dir, tmp_path / "local", model="counting_net")
    info = _on_a_loopback_cluster(image_dir, tmp_path, cpus=[1, 1])
    assert info["addresses"] == ["127.0.0.1", "127.0.0.1"]  # two nodes, on loopback
    assert info["workers"] == 2  # one per 1-CPU node
    assert (tmp_path / "run" / "units.csv").read_bytes() == local


def test_a_node_that_leaves_mid_run_still_gives_the_same_tables(image_dir, tmp_path):
    local = _units_csv(image_dir, tmp_path / "local", model="counting_net")
    fast_health_checks = {
        "WMPROBE_TEST_DELAY": "0.4",  # ~2.4 s a chunk: the node leaves inside one
        "RAY_health_check_initial_delay_ms": "1000",
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_timeout_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
    }
    # two 1-CPU nodes: the lost actor has nowhere to restart, the head's actor does the rest
    info = _on_a_loopback_cluster(image_dir, tmp_path, [1, 1], leave=True, env=fast_health_checks)
    assert info["left"] is not None and info["left"] < info["finished"], info  # mid-run
    assert info["nodes_at_end"] == 1
    assert (tmp_path / "run" / "units.csv").read_bytes() == local


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


def test_an_address_other_than_the_running_session_is_refused_naming_both():
    with RayEngine(num_cpus=1, object_store_memory=STORE):
        current = ray.get_runtime_context().gcs_address
        other = f"127.0.0.1:{free_port()}"
        with pytest.raises(RayUnavailableError, match=f"{current}.*{other}"):
            RayEngine(other)
        with RayEngine(current) as again:  # the same cluster: used, and left running
            assert not again._started
        assert ray.is_initialized()
    assert not ray.is_initialized()


def test_a_cluster_that_refuses_the_token_says_what_to_set(monkeypatch):
    def refused(**kwargs):
        try:
            raise ray.exceptions.AuthenticationError("InvalidAuthToken")
        except ray.exceptions.AuthenticationError as exc:
            raise ConnectionError("Failed to connect to Ray cluster") from exc

    monkeypatch.setattr(ray, "init", refused)
    port = free_port()
    with socket.socket() as listening:  # something answers there, as a head would
        listening.bind(("127.0.0.1", port))
        listening.listen()
        with pytest.raises(RayUnavailableError, match="RAY_AUTH_TOKEN"):
            RayEngine(f"127.0.0.1:{port}")


_IMPORTED_FIRST_CHILD = """
import ray  # imported before the cluster sets its token: Ray has read its settings already
from wmprobe.extraction.engines.cluster import LocalCluster
from wmprobe.extraction.engines.ray import RayEngine
with LocalCluster(nodes=1, cpus=1, store={store}) as cluster, RayEngine(cluster.address) as engine:
    print("NODES", len(engine.alive_nodes()))
"""


def test_a_local_cluster_takes_drivers_that_imported_ray_before_it():
    command = loopback_only([sys.executable, "-c", _IMPORTED_FIRST_CHILD.format(store=STORE)])
    if command is None:
        pytest.skip("this machine cannot make a network namespace (`unshare --net`)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        env.pop(name, None)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NODES 1" in done.stdout

"""The Ray engine gives the tables of the local engine, byte for byte (issue 15, point 5).

Every test starts its own Ray on 127.0.0.1 (small object stores, no dashboard) and stops what it
started by its own handles: the engine's ``close`` for a Ray started by ``ray.init``, and the
process groups of the ``ray start --block`` nodes it launched for the two-node cluster.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray engine's tests need the wmprobe[ray] extra")

from wmprobe.auditing.run import audit  # noqa: E402
from wmprobe.extraction.cache import ActivationCache  # noqa: E402
from wmprobe.extraction.engines.ray import RayEngine, RayUnavailableError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STORE = 80 * 1024 * 1024
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    import tests._counting  # noqa: F401 - registers counting_net (it can sleep per batch)

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
    address = f"127.0.0.1:{_free_port()}"
    with pytest.raises(RayUnavailableError, match=address.replace(".", r"\.")):
        RayEngine(address)
    assert not ray.is_initialized()


def _ray_start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    ray_cli = Path(sys.executable).with_name("ray")
    return subprocess.Popen(
        [str(ray_cli), "start", "--block", "--num-cpus=1", f"--object-store-memory={STORE}",
         "--disable-usage-stats", "--node-ip-address=127.0.0.1", *args],
        env=env,
        start_new_session=True,  # its own process group: stopped by killpg below
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    """Stop a ``ray start --block`` node and everything it launched (its process group)."""
    for sig, wait in ((signal.SIGTERM, 90), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_a_two_node_cluster_gives_the_local_engines_units_csv(
    image_dir, tmp_path, local_tables, monkeypatch
):
    port = _free_port()
    paths = [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=os.pathsep.join(paths))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    temp = tempfile.mkdtemp(prefix="wmray", dir="/tmp")  # Ray's socket paths must be short
    head = _ray_start(
        ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"],
        env,
        tmp_path / "head.log",
    )
    second = None
    try:
        deadline = time.time() + 180
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                alive = head.poll() is None and time.time() < deadline
                assert alive, (tmp_path / "head.log").read_text()
                time.sleep(0.5)
        second = _ray_start([f"--address=127.0.0.1:{port}"], env, tmp_path / "second.log")
        with RayEngine(f"127.0.0.1:{port}") as engine:
            while len(engine.alive_nodes()) < 2:
                assert time.time() < deadline, (tmp_path / "second.log").read_text()
                time.sleep(0.5)
            tables = _units_csv(image_dir, tmp_path, engine)
            assert len(engine.started_workers()) == 2  # one per 1-CPU node
        assert not ray.is_initialized()
    finally:
        for proc in (second, head):
            if proc is not None:
                _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)
    assert tables == local_tables

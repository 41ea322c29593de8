"""A Ray cluster of several nodes on this machine, for tests and benchmarks (127.0.0.1 only).

Each node is a ``ray start --block`` process in its own process group; leaving the ``with`` block
stops every node by its process group (SIGTERM, then SIGKILL), never with a machine-wide
``ray stop``.

Example:
    >>> with LocalCluster(nodes=2, cpus=1) as cluster:  # doctest: +SKIP
    ...     engine = RayEngine(cluster.address)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wmprobe.extraction.engines.ray import RayUnavailableError, driver_path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """``nodes`` Ray nodes of ``cpus`` CPUs and ``store`` bytes of object store each; workers
    import the same code as this process (its ``sys.path``). ``address`` is the head's."""

    def __init__(self, nodes: int = 2, cpus: int = 1, store: int = 80 << 20, timeout: float = 300):
        self.nodes, self.cpus, self.store, self.timeout = nodes, cpus, store, timeout
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._procs: list[subprocess.Popen] = []
        self._temp = ""

    def _start(self, args: list[str], log: str) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=driver_path())
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("ray")), "start", "--block",
             f"--num-cpus={self.cpus}", f"--object-store-memory={self.store}",
             "--disable-usage-stats", "--node-ip-address=127.0.0.1", *args],
            env=env,
            start_new_session=True,  # its own process group, stopped by killpg
            stdout=open(os.path.join(self._temp, log), "w"),  # noqa: SIM115 - the child keeps it
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._procs.append(proc)
        return proc

    def _log(self, name: str) -> str:
        with open(os.path.join(self._temp, name)) as f:
            return f.read()[-2000:]

    def __enter__(self) -> LocalCluster:
        self._temp = tempfile.mkdtemp(prefix="wmray", dir="/tmp")  # socket paths must be short
        try:
            head = self._start(
                ["--head", f"--port={self.port}", "--include-dashboard=false",
                 f"--temp-dir={self._temp}"],
                "head.log",
            )  # fmt: skip
            deadline = time.time() + self.timeout
            while True:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    break
                except OSError as exc:
                    if head.poll() is not None or time.time() > deadline:
                        raise RayUnavailableError(
                            f"The Ray head at {self.address} did not start: {self._log('head.log')}"
                        ) from exc
                    time.sleep(0.5)
            for i in range(1, self.nodes):
                self._start([f"--address={self.address}"], f"node{i}.log")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for proc in reversed(self._procs):
            _stop_group(proc)
        self._procs = []
        shutil.rmtree(self._temp, ignore_errors=True)


def _stop_group(proc: subprocess.Popen) -> None:
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

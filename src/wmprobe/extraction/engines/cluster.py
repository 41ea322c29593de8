"""A Ray cluster of several nodes on this machine, for tests and benchmarks (loopback only).

Each node is a ``ray start --block`` process in its own process group;
:meth:`LocalCluster.remove_node` kills one (a node that leaves), and leaving the ``with`` block
stops every node by its process group (SIGTERM, then SIGKILL), never with a machine-wide
``ray stop``. A node also gets SIGTERM when the process that started it dies (Linux), so a driver
killed outright takes its cluster with it.

Loopback: Ray advertises a node by the machine's network address even when it was started on
127.0.0.1 (its ``resolve_ip_for_localhost`` looks for the interface of the default route), so the
nodes of a cluster on a machine with a network talk to each other over that address. In a network
namespace that has only the loopback interface there is no such route and every address is
127.0.0.1: :func:`loopback_only` wraps a command to run there (the cluster, and the driver that
uses it, in one process tree).

Authentication: the nodes share a fresh token (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``), set in
this process's environment too while the cluster runs, unless the environment already chooses a
mode; ``ray start --head`` alone would turn token authentication on when ``~/.ray/auth_token``
exists, and the other nodes and the driver would then be refused.

Example:
    >>> with LocalCluster(cpus=[2, 1]) as cluster:  # doctest: +SKIP
    ...     engine = RayEngine(cluster.address)
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from wmprobe.extraction.engines.ray import WORKER_NICENESS, RayUnavailableError, driver_path

AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.cache
def _namespace_prefix() -> tuple[str, ...] | None:
    """``unshare`` arguments that make a network namespace here (as root, else as a user
    namespace's root), or None when neither works or ``unshare``/``ip`` are missing."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return None
    for prefix in (("unshare", "--net"), ("unshare", "--net", "--map-root-user")):
        probe = subprocess.run(
            [*prefix, "ip", "link", "set", "lo", "up"], capture_output=True, timeout=30
        )
        if probe.returncode == 0:
            return prefix
    return None


def loopback_only(argv: Sequence[str]) -> list[str] | None:
    """``argv`` wrapped to run in a network namespace of its own whose only interface is
    loopback (brought up first); None where this machine cannot make one (``unshare -n``)."""
    prefix = _namespace_prefix()
    if prefix is None:
        return None
    return [*prefix, "sh", "-c", 'ip link set lo up && exec "$@"', "loopback-only", *argv]


def in_loopback_only_namespace() -> bool:
    """Whether this process sees no network interface but loopback."""
    return {name for _, name in socket.if_nameindex()} <= {"lo"}


class LocalCluster:
    """Ray nodes on this machine, the head first: ``cpus`` CPUs each (a list: per node), and
    ``store`` bytes of object store each; workers import the same code as this process (its
    ``sys.path``) and run at its priority, as a local run does. ``address`` is the head's."""

    def __init__(
        self,
        nodes: int = 2,
        cpus: int | Sequence[int] = 1,
        store: int = 80 << 20,
        timeout: float = 300,
    ):
        self.cpus = [cpus] * nodes if isinstance(cpus, int) else list(cpus)
        self.nodes, self.store, self.timeout = len(self.cpus), store, timeout
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._procs: list[subprocess.Popen] = []
        self._temp = ""
        self._saved_env: dict[str, str | None] = {}

    def _start(self, cpus: int, args: list[str], log: str) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=driver_path(), RAY_worker_niceness=str(WORKER_NICENESS))
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("ray")), "start", "--block",
             f"--num-cpus={cpus}", f"--object-store-memory={self.store}",
             "--disable-usage-stats", "--node-ip-address=127.0.0.1", *args],
            env=env,
            start_new_session=True,  # its own process group, stopped by killpg
            preexec_fn=_die_with_parent,
            stdout=open(os.path.join(self._temp, log), "w"),  # noqa: SIM115 - the child keeps it
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._procs.append(proc)
        return proc

    def _log(self, name: str) -> str:
        with open(os.path.join(self._temp, name)) as f:
            return f.read()[-2000:]

    def _share_token(self) -> None:
        """One fresh token for the nodes and this process, unless the environment has a mode."""
        if os.environ.get("RAY_AUTH_MODE"):
            return
        self._saved_env = {k: os.environ.get(k) for k in AUTH_VARIABLES}
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
        _reload_ray_auth()

    def __enter__(self) -> LocalCluster:
        self._temp = tempfile.mkdtemp(prefix="wmray", dir="/tmp")  # socket paths must be short
        try:
            self._share_token()
            head = self._start(
                self.cpus[0],
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
                self._start(self.cpus[i], [f"--address={self.address}"], f"node{i}.log")
        except BaseException:
            self.__exit__()
            raise
        return self

    def remove_node(self, index: int) -> None:
        """Kill node ``index`` (not the head) with its workers at once: a node that leaves."""
        if not 0 < index < len(self._procs):
            raise ValueError(f"node {index} is not a worker node of this cluster")
        _stop_group(self._procs[index], graceful=False)

    def __exit__(self, *exc) -> None:
        for proc in reversed(self._procs):
            _stop_group(proc)
        self._procs = []
        shutil.rmtree(self._temp, ignore_errors=True)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._saved_env:
            _reload_ray_auth()
        self._saved_env = {}


def _reload_ray_auth() -> None:
    """Make a Ray already imported here read the authentication variables again (it reads them
    once, at import; ``ray.init`` itself refreshes them this way when it turns tokens on)."""
    if "ray._raylet" not in sys.modules:
        return  # read when Ray is imported
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _die_with_parent() -> None:
    """In a node's process before it starts: SIGTERM when this process dies (Linux), so that a
    driver killed outright does not leave its cluster running."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


#: Seconds a node may take to stop after SIGTERM before its process group gets SIGKILL (``ray
#: start --block`` stops its processes one after another, waiting on each: ~30 s here).
GRACE_S = 5


def _stop_group(proc: subprocess.Popen, *, graceful: bool = True) -> None:
    signals = (
        ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 30)) if graceful else ((signal.SIGKILL, 30),)
    )
    for sig, wait in signals:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue

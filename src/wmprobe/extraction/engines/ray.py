"""The Ray engine: chunks computed by a pool of Ray actors that keep their model loaded.

Where it runs: the cluster at ``address`` (or ``$RAY_ADDRESS``); with neither, a Ray instance is
started on this machine for the run (127.0.0.1, no dashboard, workers at the driver's priority
rather than Ray's niceness 15) and stopped by :meth:`close`.

The pool: on each node one actor per GPU (``num_gpus=1``) where the node has GPUs, else one
actor per CPU (``cpus_per_worker``), leaving one CPU of every node with more than one free for
Ray itself (a pool that takes every CPU can stall Ray); a 1-CPU node gets one actor. Each actor
sets torch's threads to the CPUs it was given, for its whole life, inside one
:func:`~wmprobe.extraction._cpu.inference_scope` (freed memory stays in its heap from chunk to
chunk), and reads images inline (no extra processes). An actor keeps the model of its last job
loaded; the driver hands each idle actor a task of the job it holds when there is one.

Where chunks go: a task's result travels back to the driver through the object store, and the
driver writes it into its cache (no shared file system needed; workers never open the cache).
Results are stored by chunk id, whatever order they arrive in. A ``--cache`` on storage that every
node mounts is used the same way, so both give the same tables.

Faults: when an actor dies mid-task (SIGKILL, OOM, a node that leaves), the driver puts its tasks
back in the queue for any worker, and Ray restarts the actor (``max_restarts``), on another node
if need be and when one has room; it takes tasks again once it answers. So the run finishes as
long as one worker is left. A task's result depends on the task alone, so a retry yields the same
bytes; a task that lost its worker more than ``MAX_RESTARTS`` times stops the run, and so does
``RESTART_TIMEOUT_S`` with every worker lost. Ctrl-C stops the pool; chunks already stored stay in
the cache, and the next run computes only the rest.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from wmprobe.errors import InvalidArgumentError, OptionalDependencyError, WmprobeError
from wmprobe.extraction.engines.base import Engine, Job, WorkerResources
from wmprobe.extraction.engines.progress import ChunkProgress

INSTALL_HINT = "pip install 'wmprobe[ray]'"
#: Niceness of the workers of a Ray that wmprobe starts: the driver's priority, as a local run
#: (Ray's default, 15, lets any other busy process on the machine take their CPU).
WORKER_NICENESS = 0
#: Restarts of an actor that died, and times a task may lose its worker; enough for a node or
#: two to leave.
MAX_RESTARTS = 4
#: Seconds without any result after which the driver checks that some worker is up.
RESTART_NOTE_S = 60.0
#: Seconds with every worker lost (none restarted) before the run stops with an error.
RESTART_TIMEOUT_S = 900.0
#: Tasks queued per actor beyond the one it runs (results transfer while the next chunk runs);
#: none once fewer tasks are left than workers, so that the run does not end waiting on one
#: worker's queue while another is idle.
QUEUE_DEPTH = 1


class RayUnavailableError(WmprobeError):
    """A Ray cluster that cannot be reached or used (the message names the address)."""


def import_ray():
    """The ``ray`` module, or an error that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise OptionalDependencyError(
            f"--engine ray needs Ray, which is not installed here: {INSTALL_HINT} (on the driver "
            "and on every node of the cluster)."
        ) from exc
    return ray


class _Worker:
    """One Ray actor: runs tasks of jobs, keeping the state (model) of the last job it ran."""

    def __init__(self, resources: WorkerResources):
        from wmprobe.extraction._cpu import inference_scope

        self.resources = resources
        # one scope for the actor's life: torch threads = its CPUs, freed memory kept for reuse
        # (a scope per task would hand the heap back and fault it in again at every chunk)
        self._scope = contextlib.ExitStack()
        self._scope.enter_context(inference_scope(resources.cpus or None))
        self.key: str | None = None
        self.state: Any = None

    def run(self, job: Job, tasks: Sequence[Any]) -> list[Any]:
        if self.key != job.key:
            self.key, self.state = None, None
            self.state = job.setup(self.resources)
            self.key = job.key
        return list(job.run(self.state, tasks, self.resources))

    def pid(self) -> int:
        return os.getpid()


def driver_path() -> str:
    """The driver's import path, absolute: workers on this machine import the same code."""
    dirs = [os.path.abspath(p or ".") for p in sys.path]
    return os.pathsep.join(dict.fromkeys(d for d in dirs if os.path.isdir(d)))


def _check_reachable(address: str) -> None:
    """A clear error naming ``address`` when nothing listens there (Ray itself retries for long)."""
    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailableError(
            f"Ray address {address!r} is not host:port (e.g. 10.0.0.1:6379), auto or ray://..."
        )
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise RayUnavailableError(
            f"No Ray cluster at {address!r} ({exc.strerror or exc}); start one with `ray start "
            "--head` there, or pass the address `ray status` shows (--ray-address / RAY_ADDRESS)."
        ) from exc


def _caused_by(exc: BaseException | None, kind: type) -> bool:
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _check_same_cluster(ray, address: str | None) -> None:
    """Refuse an explicit ``address`` other than the cluster this process is connected to."""
    if address is None or address == "auto" or "://" in address:
        return
    current = ray.get_runtime_context().gcs_address
    if address.rpartition(":")[2] != current.rpartition(":")[2]:
        raise RayUnavailableError(
            f"This process is already connected to the Ray cluster at {current!r}, not "
            f"{address!r}; call ray.shutdown() first, or drop the address."
        )


def plan_pool(
    nodes: Sequence[dict], cpus_per_worker: int = 1, *, gpu: bool = True
) -> list[tuple[str, WorkerResources]]:
    """The actors to start: ``(node id, resources)`` for each, from ``ray.nodes()`` entries.

    ``gpu``: one actor per GPU of the nodes that have GPUs, sharing the node's spare CPUs (nodes
    without GPUs get none: a job's device is the driver model's, and so its cache key). Else one
    actor per ``cpus_per_worker`` spare CPUs of every node. Spare: all CPUs but one (Ray, the
    object store and the driver need some), all of them on a 1-CPU node.
    """
    out = []
    for node in nodes:
        cpus = int(node["Resources"].get("CPU", 0))
        gpus = int(node["Resources"].get("GPU", 0))
        spare = cpus - 1 if cpus > 1 else cpus
        if gpu:
            per_gpu = max(1, spare // gpus) if gpus else 0
            slots = [WorkerResources(per_gpu, 1, "cuda", 0)] * gpus
        else:
            count = spare // cpus_per_worker
            slots = [WorkerResources(cpus_per_worker, 0, "cpu", 0)] * count
        out += [(node["NodeID"], r) for r in slots]
    return out


class RayEngine(Engine):
    """Chunks on a Ray cluster (see the module docstring).

    ``address``: a running cluster (``host:port``, ``auto``, ``ray://...``); None: ``$RAY_ADDRESS``,
    else a Ray instance started here for the run (``num_cpus``, ``object_store_memory`` apply to
    it). ``cpus_per_worker``: CPUs (torch threads) of each CPU actor. ``max_workers`` caps the pool.
    """

    name = "ray"
    remote = True

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_worker: int = 1,
        max_workers: int | None = None,
        num_cpus: int | None = None,
        object_store_memory: int | None = None,
    ):
        if cpus_per_worker < 1:
            raise InvalidArgumentError(
                f"Expected argument `cpus_per_worker` to be >= 1 but got {cpus_per_worker}"
            )
        self.ray = import_ray()
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.cpus_per_worker = cpus_per_worker
        self.max_workers = max_workers
        self._started = False
        self._actors: list[Any] = []
        self._held: dict[int, str | None] = {}
        self._pid_refs: list[Any] = []
        if self.ray.is_initialized():  # the caller's own Ray session: used, and left running
            _check_same_cluster(self.ray, address)
            return
        if self.address is None:
            self._start_local(num_cpus, object_store_memory)
        else:
            self._connect(self.address)

    def _start_local(self, num_cpus: int | None, object_store_memory: int | None) -> None:
        cpus = num_cpus or os.cpu_count() or 1
        store = object_store_memory or min(4 << 30, (128 << 20) + cpus * (64 << 20))
        self.ray.init(
            address="local",
            num_cpus=cpus,
            object_store_memory=store,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
            _system_config={"worker_niceness": WORKER_NICENESS},
            runtime_env={"env_vars": {"PYTHONPATH": driver_path()}},
        )
        self._started = True

    def _connect(self, address: str) -> None:
        _check_reachable(address)
        try:
            self.ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if _caused_by(exc, self.ray.exceptions.AuthenticationError):
                raise RayUnavailableError(
                    f"The Ray cluster at {address!r} refused this driver's token: give it the "
                    "cluster's (RAY_AUTH_MODE=token with RAY_AUTH_TOKEN or ~/.ray/auth_token, as "
                    "on its nodes)."
                ) from exc
            raise RayUnavailableError(
                f"Cannot connect to the Ray cluster at {address!r}: {exc}"
            ) from exc
        self._started = True  # our connection: disconnected by close(), the cluster stays

    def _nodes(self) -> list[dict]:
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def _pool(self, gpu: bool) -> None:
        """Start the actors, pinned (softly) to their nodes (see :func:`plan_pool`)."""
        if self._actors:
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        worker_class = self.ray.remote(_Worker)
        slots = plan_pool(self._nodes(), self.cpus_per_worker, gpu=gpu)[: self.max_workers]
        if not slots:
            need = "a GPU" if gpu else f"{self.cpus_per_worker} CPU(s) to spare"
            raise RayUnavailableError(
                f"The Ray cluster at {self.address or 'this machine'} has no node with {need} "
                "for a worker (the workers use the device of the driver's model: --device)."
            )
        for node_id, resources in slots:
            actor = worker_class.options(
                num_cpus=resources.cpus,
                num_gpus=resources.gpus,
                max_restarts=MAX_RESTARTS,
                max_task_retries=0,  # the driver puts a lost task back for any worker
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=True),
            ).remote(resources)
            self._actors.append(actor)
            self._pid_refs.append(actor.pid.remote())
        self._held = {i: None for i in range(len(self._actors))}

    def wait_for_nodes(self, count: int, timeout: float = 300) -> None:
        """Wait until the cluster has ``count`` live nodes (a cluster that is still starting)."""
        deadline = time.time() + timeout
        while len(self._nodes()) < count:
            if time.time() > deadline:
                raise RayUnavailableError(
                    f"The Ray cluster at {self.address} has {len(self._nodes())} live nodes "
                    f"after {timeout:.0f} s, not {count}."
                )
            time.sleep(0.5)

    def alive_nodes(self) -> list[dict]:
        """The cluster's live nodes, as ``ray.nodes()`` describes them."""
        return self._nodes()

    def started_workers(self) -> list[Any]:
        """The pool's actors (empty until the first task is handed out)."""
        return list(self._actors)

    def worker_pids(self, *, fresh: bool = False) -> list[int]:
        """Process ids of the pool's actors when they started (``fresh``: now, once their
        queued tasks are done)."""
        if fresh:
            return self.ray.get([a.pid.remote() for a in self._actors])
        return self.ray.get(list(self._pid_refs))

    def map_jobs(
        self, work: Sequence[tuple[Job, Sequence[Any]]], *, progress: bool = False, desc: str = ""
    ) -> Iterator[tuple[int, int, Any]]:
        pending = [collections.deque(range(len(tasks))) for _, tasks in work]
        if not any(pending):
            return
        self._pool(any(job.gpu for job, _ in work))
        refs = [self.ray.put(job) for job, _ in work]
        inflight: dict[Any, tuple[int, int, int]] = {}
        load: collections.Counter = collections.Counter()
        deaths: collections.Counter = collections.Counter()  # per task: workers lost running it
        up = set(range(len(self._actors)))  # actors that take tasks
        restarting: dict[Any, int] = {}  # an actor's ping -> the actor, until Ray restarted it
        all_down_since: float | None = None

        def next_task(actor: int) -> tuple[int, int] | None:
            held = self._held[actor]
            same = [j for j, (job, _) in enumerate(work) if job.key == held and pending[j]]
            if not same:  # another job: the one with the most tasks left
                left = [j for j in range(len(work)) if pending[j]]
                if not left:
                    return None
                same = [max(left, key=lambda j: len(pending[j]))]
            j = same[0]
            return j, pending[j].popleft()

        def fill() -> None:
            """A task for every idle worker first, then one queued behind each busy worker while
            at least as many tasks are left as workers (the last ones wait for a free worker)."""
            for depth in range(QUEUE_DEPTH + 1):
                for actor in sorted(up):
                    if load[actor] != depth or (depth and sum(map(len, pending)) < len(up)):
                        continue
                    picked = next_task(actor)
                    if picked is None:
                        return
                    j, i = picked
                    self._held[actor] = work[j][0].key
                    ref = self._actors[actor].run.remote(refs[j], [work[j][1][i]])
                    inflight[ref] = (actor, j, i)
                    load[actor] += 1

        def lost(actor: int, j: int, i: int, exc: Exception) -> None:
            """The worker died under task ``(j, i)``: the task goes back to the queue (for any
            worker), and the actor takes tasks again once Ray has restarted it."""
            deaths[j, i] += 1
            if deaths[j, i] > MAX_RESTARTS:
                raise RayUnavailableError(
                    f"A Ray worker died {deaths[j, i]} times running one chunk (out of memory? "
                    f"nodes leaving?): {exc}"
                ) from exc
            pending[j].appendleft(i)
            if actor in up:
                up.discard(actor)
                restarting[self._actors[actor].pid.remote()] = actor

        with ChunkProgress(work, progress=progress, desc=desc) as bar:
            fill()
            while inflight or any(pending):
                ready, _ = self.ray.wait(
                    [*inflight, *restarting], num_returns=1, timeout=RESTART_NOTE_S
                )
                if not ready:
                    all_down_since = self._stalled(up, restarting, all_down_since)
                    continue
                for ref in ready:
                    if ref in restarting:
                        actor = restarting.pop(ref)
                        try:
                            self.ray.get(ref)
                            up.add(actor)  # restarted
                        except self.ray.exceptions.ActorUnavailableError:
                            time.sleep(0.5)  # still restarting: ask again
                            restarting[self._actors[actor].pid.remote()] = actor
                        except self.ray.exceptions.RayActorError:
                            pass  # Ray gave up on it (restarts spent): it stays out
                        continue
                    actor, j, i = inflight.pop(ref)
                    load[actor] -= 1
                    try:
                        result = self._get(ref)
                    except self.ray.exceptions.RayActorError as exc:
                        lost(actor, j, i, exc)
                        continue
                    bar.done(j, i)
                    yield j, i, result[0]
                if up:
                    all_down_since = None
                fill()

    def _stalled(self, up: set, restarting: dict, since: float | None) -> float | None:
        """No result for a while: say so when every worker is down, and stop after
        ``RESTART_TIMEOUT_S`` of that (chunks already stored stay in the cache)."""
        if up or not restarting:
            return None
        now = time.time()
        since = since or now
        print(
            f"wmprobe: all {len(self._actors)} Ray workers are down, waiting for Ray to restart "
            "them (nodes left? add nodes, or stop with Ctrl-C and rerun later).",
            file=sys.stderr,
            flush=True,
        )
        if now - since > RESTART_TIMEOUT_S:
            raise RayUnavailableError(
                f"No Ray worker came back within {RESTART_TIMEOUT_S:.0f} s after all "
                f"{len(self._actors)} were lost; the chunks computed so far are in the cache, "
                "and the same command on a cluster with room for workers computes the rest."
            )
        return since

    def _get(self, ref) -> Any:
        """A task's result; a WmprobeError raised in a worker comes back as itself."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, WmprobeError):
                raise cause from None
            raise

    def close(self) -> None:
        """Stop the pool; disconnect from the cluster, or stop the Ray instance started here."""
        for actor in self._actors:
            with contextlib.suppress(Exception):  # an actor already gone is what we want
                self.ray.kill(actor)
        self._actors, self._held, self._pid_refs = [], {}, []
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
            self._started = False

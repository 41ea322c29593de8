"""Where chunks of work run: :class:`LocalEngine` (here; the default, imports no Ray) or
:class:`~wmprobe.extraction.engines.ray.RayEngine` (a Ray cluster; the ``wmprobe[ray]`` extra).

Every engine takes :class:`Job` s and their tasks and yields each task's result tagged with its
index (see :mod:`wmprobe.extraction.engines.base`).
"""

from __future__ import annotations

from wmprobe.extraction.engines.base import Engine, Job, WorkerResources
from wmprobe.extraction.engines.local import LocalEngine

ENGINES = ("local", "ray")

__all__ = ["ENGINES", "Engine", "Job", "LocalEngine", "WorkerResources", "get_engine"]


def get_engine(
    name: str = "local",
    *,
    address: str | None = None,
    threads: int | None = None,
    loader_workers: int | None = None,
) -> Engine:
    """The engine called ``name``.

    ``local``: this process, with ``threads`` torch threads and ``loader_workers`` image readers.
    ``ray``: the Ray cluster at ``address`` (else ``$RAY_ADDRESS``; with neither, a Ray instance
    started on this machine for the run and stopped by :meth:`Engine.close`). Raises
    ``OptionalDependencyError`` (how to install it) when Ray is missing.
    """
    from wmprobe.errors import InvalidArgumentError

    if name == "local":
        if address is not None:
            raise InvalidArgumentError("`address` is for the ray engine; drop it or use ray.")
        return LocalEngine(threads=threads, loader_workers=loader_workers)
    if name == "ray":
        from wmprobe.extraction.engines.ray import RayEngine

        return RayEngine(address)
    raise InvalidArgumentError(
        f"Expected argument `engine` to be one of {ENGINES} but got {name!r}"
    )

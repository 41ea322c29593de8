"""Many models at once on an engine: every model's missing chunks in one pool of work.

``audit --model a,b`` and ``reproduce`` with ``--engine ray`` call :func:`fill_cache` (through
:func:`~wmprobe.auditing.many.audit_many`) before their audits: the chunks of all models go
to the cluster together (each worker keeps one model loaded and takes that model's chunks while
there are any), and the audits that follow, one model after the other, read their activations
from the cache. Whatever loop runs the audits, it finds the same cache entries it would have
computed itself, so the tables are the same.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

from torch import nn

from wmprobe.errors import WmprobeError
from wmprobe.extraction.activations import ExtractionRequest, run_requests
from wmprobe.extraction.cache import ActivationCache
from wmprobe.extraction.engines.base import Engine
from wmprobe.models import load_model
from wmprobe.probes.images import ImageSet
from wmprobe.probes.scenario import Scenario, resolve_scenarios

log = logging.getLogger(__name__)


def fill_cache(
    image_set: ImageSet,
    models: Sequence[str],
    scenarios: Sequence[str | Scenario],
    layers: Sequence[str],
    *,
    engine: Engine,
    cache: ActivationCache,
    seed: int = 0,
    batch_size: int = 16,
    reduction: str = "mean",
    dtype: str = "float32",
    jpeg_quality: int | None = None,
    pretrained: bool = True,
    allow_download: bool = False,
    device: str = "auto",
    progress: bool = True,
    say: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Compute the activations an audit of each model would (the same keys) into ``cache``, all
    models' chunks at once on ``engine``.

    ``device`` resolves here as in the audit (``auto``: CUDA when this machine has it), and the
    workers run on that device type (it is in the cache key). A model that cannot be loaded here
    is left out and returned with the reason (its audit will say the same); the others are
    computed.
    """
    say = say or log.info
    probe_sets = resolve_scenarios(list(scenarios))
    requests, failed = [], {}
    for name in models:
        try:
            model = load_model(
                name, pretrained=pretrained, device=device, allow_download=allow_download
            )
            request = ExtractionRequest(
                model,
                image_set.records,
                probe_sets,
                seed=seed,
                layers=layers,
                batch_size=batch_size,
                cache=cache,
                reduction=reduction,
                dtype=dtype,
                jpeg_quality=jpeg_quality,
            )
        except WmprobeError as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        model.weights_hash(), model.code_hash()  # kept; the module is rebuilt on the workers
        request.model = dataclasses.replace(model, module=nn.Module(), classifier=None)
        requests.append(request)
    if requests:
        say(f"{len(requests)} models' activations on the {engine.name} engine, all at once")
        run_requests(requests, engine, progress=progress)
    return failed

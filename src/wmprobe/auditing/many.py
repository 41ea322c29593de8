"""Several models audited into one folder: ``ROOT/models/<model>/`` and ``ROOT/study.json``.

Used by ``wmprobe audit --model a,b`` and by ``wmprobe reproduce``, with one policy for models that
cannot be audited here: every model is checked before any work (its name, and whether its weights
can be had offline). Those that fail are skipped with the reason, said at once and listed in
study.json (and in the report); the others are audited. When none is left, the call stops with
an error before any work. A model whose audit fails with a named error later (a missing layer, a
damaged weights file) is skipped the same way and the others go on.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wmprobe.auditing import runfolder
from wmprobe.auditing.run import AuditResult, audit
from wmprobe.errors import WeightsUnavailableError, WmprobeError
from wmprobe.probes.images import ImageSet, scan_folder
from wmprobe.probes.scenario import Scenario, resolve_scenarios

__all__ = ["ModelStatus", "audit_many", "unavailable_models"]

#: The defaults of :func:`audit`'s options, for the settings a finished run is compared on.
_AUDIT_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(audit).parameters.items()
    if p.default is not inspect.Parameter.empty
}


@dataclass
class ModelStatus:
    """What happened to one model: ``audited``, ``resumed`` (reused) or ``skipped`` (why)."""

    status: str
    reason: str = ""
    seconds: float = 0.0


def unavailable_models(
    models: Sequence[str], *, pretrained: bool = True, allow_download: bool = False
) -> dict[str, str]:
    """The models that cannot be audited here, each with the reason (an unknown name, or trained
    weights that are not available offline while downloads are not allowed)."""
    from wmprobe.models import get_model_spec

    reasons: dict[str, str] = {}
    for name in models:
        if name.startswith("ckpt:"):
            continue  # a local file: loading it says what is wrong
        try:
            spec = get_model_spec(name)
        except WmprobeError as exc:
            reasons[name] = f"{type(exc).__name__}: {exc}"
            continue
        if pretrained and not allow_download and not spec.weights_available():
            hint = f" ({spec.weights_hint})" if spec.weights_hint else ""
            reasons[name] = (
                f"{WeightsUnavailableError.__name__}: weights not available offline{hint}"
            )
    return reasons


def _none_left_message(models: Sequence[str], reasons: dict[str, str]) -> str:
    weights = [m for m, r in reasons.items() if r.startswith(WeightsUnavailableError.__name__)]
    text = f"None of the {len(models)} model(s) can be audited here."
    if weights:
        text += (
            f" Weights are not available offline for {len(weights)} of the {len(models)} "
            f"models: {', '.join(weights)}. Add --download-weights (needs network) or "
            "--random-weights, or leave them out (`wmprobe models` says which are ready)."
        )
    others = {m: r for m, r in reasons.items() if m not in weights}
    if others:
        text += " " + "; ".join(f"{m}: {r}" for m, r in others.items())
    return text


def audit_many(
    images: str | Path | ImageSet,
    out: str | Path,
    models: Sequence[str],
    *,
    scenarios: Sequence[str | Scenario],
    manifest: dict[str, Any] | None = None,
    resume: bool = False,
    command: str = "",
    pretrained: bool = True,
    allow_download: bool = False,
    keep_watermarked: bool = False,
    limit: int | None = None,
    say: Callable[[str], None] = lambda _: None,
    on_result: Callable[[str, AuditResult], None] | None = None,
    **options: Any,
) -> dict[str, ModelStatus]:
    """Audit each of ``models`` into ``out/models/<model>/``; ``out/study.json`` says how each went.

    ``manifest`` is the rest of study.json (a study's request); its ``statuses`` are kept up to
    date after every model. With ``resume``, a model whose run folder is finished and was made
    with the same settings (:data:`~wmprobe.auditing.runfolder.RESUME_KEYS`) is not audited
    again. ``on_result`` sees each fresh :class:`AuditResult` after it is saved. ``options`` go
    to :func:`wmprobe.auditing.run.audit` (layers, seed, device, cache, ...). Returns the status
    of every model, in order.

    Example:
        >>> statuses = audit_many("imgs", "ROOT", ["resnet18", "vgg16"],
        ...                       scenarios=["chinese"])  # doctest: +SKIP
    """
    out = runfolder.check_writable(out)
    probe_sets = resolve_scenarios(list(scenarios))  # every name checked before any work
    image_set = (
        images
        if isinstance(images, ImageSet)
        else scan_folder(images, keep_watermarked=keep_watermarked, limit=limit)
    )
    models = list(dict.fromkeys(models))
    manifest = dict(manifest or {})
    manifest.setdefault("command", command)
    manifest.update(models=models, scenarios=[s.name for s in probe_sets])
    statuses: dict[str, ModelStatus] = {}

    def save_manifest() -> None:
        manifest["statuses"] = {m: asdict(s) for m, s in statuses.items()}
        runfolder.write_file(out, runfolder.STUDY_JSON, _json(manifest))

    out.mkdir(parents=True, exist_ok=True)
    runfolder.clear(out)  # a one-model run written here before is not part of this one
    unavailable = unavailable_models(models, pretrained=pretrained, allow_download=allow_download)
    for name, reason in unavailable.items():
        say(f"{name}: skipped: {reason}")
        statuses[name] = ModelStatus("skipped", reason)
    save_manifest()
    if len(unavailable) == len(models):
        raise WmprobeError(_none_left_message(models, unavailable))
    asked = {**_AUDIT_DEFAULTS, **options}
    wanted = {
        "pretrained": pretrained,
        "scenarios": [s.name for s in probe_sets],
        "scenario_specs": {s.name: s.spec_hash() for s in probe_sets},
        "layers": list(asked["layers"]),
        "seed": asked["seed"],
        "limit": limit,
        "images": str(image_set.root),
        "keep_watermarked": keep_watermarked,
        "reduction": asked["reduction"],
        "jpeg_quality": asked["jpeg_quality"],
    }  # as the audit's run.json will record them
    todo = [m for m in models if m not in unavailable]
    reasons = {
        name: runfolder.reusable(runfolder.model_folder(out, name), {**wanted, "model": name})
        if resume
        else "asked anew"
        for name in todo
    }
    _spread(
        image_set,
        [m for m in todo if reasons[m] is not None],
        probe_sets,
        asked,
        say=say,
        pretrained=pretrained,
        allow_download=allow_download,
    )
    for i, name in enumerate(todo, start=1):
        folder = runfolder.model_folder(out, name)
        why = reasons[name]
        if why is None:
            say(f"[{i}/{len(todo)}] {name}: finished run folder found, not audited again")
            statuses[name] = ModelStatus("resumed")
            save_manifest()
            continue
        say(f"[{i}/{len(todo)}] {name}: auditing ({why})")
        runfolder.begin(folder, command=command)
        start = time.perf_counter()
        try:
            result = audit(
                image_set,
                model=name,
                scenarios=probe_sets,
                limit=limit,
                keep_watermarked=keep_watermarked,
                pretrained=pretrained,
                allow_download=allow_download,
                **options,
            )
        except WmprobeError as exc:  # weights damaged, no such layer, ...: this model only
            say(f"[{i}/{len(todo)}] {name}: skipped: {exc}")
            statuses[name] = ModelStatus("skipped", f"{type(exc).__name__}: {exc}")
            save_manifest()
            continue
        result.config["command"] = command
        result.save(folder)
        statuses[name] = ModelStatus("audited", seconds=round(time.perf_counter() - start, 1))
        save_manifest()
        if on_result is not None:
            on_result(name, result)
        del result
    return statuses


def _spread(image_set, models, probe_sets, asked, *, say, pretrained, allow_download) -> None:
    """On a remote engine (Ray), every model's chunks at once first, into the cache the audits
    then read (:func:`~wmprobe.extraction.spread.fill_cache`); locally nothing to do."""
    engine = asked.get("engine")
    cache = asked.get("cache", True)
    if engine is None or not engine.remote or not models or cache in (False, None):
        return
    from wmprobe.extraction.cache import ActivationCache
    from wmprobe.extraction.spread import fill_cache

    if not isinstance(cache, ActivationCache):
        cache = ActivationCache() if cache is True else ActivationCache(cache)
    fill_cache(
        image_set,
        models,
        probe_sets,
        asked["layers"],
        engine=engine,
        cache=cache,
        seed=asked["seed"],
        batch_size=asked.get("batch_size", 16),
        reduction=asked["reduction"],
        dtype=asked.get("dtype", "float32"),
        jpeg_quality=asked["jpeg_quality"],
        pretrained=pretrained,
        allow_download=allow_download,
        device=asked.get("device", "auto"),
        progress=asked.get("progress", True),
        say=say,
    )


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, default=str)

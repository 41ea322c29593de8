"""The whole study in one call: contact sheets, an audit per model, analysis, report, mitigation.

Layout of ``OUT``::

    study.json               the request, the command, versions, and each model's status
    sheets/<scenario>.png    a contact sheet of each scenario's probe images (+ .csv)
    models/<model>/          one audit run folder per model (``wmprobe audit`` writes the same)
    report/report.html       the report (``wmprobe report OUT`` writes it again)

Resumable: a model whose run folder is complete (run.json) and was made with the same settings
(:data:`wmprobe.auditing.runfolder.RESUME_KEYS`) is not audited again. A model whose weights
cannot be had here, or that wmprobe does not know, is skipped with the reason (listed in
study.json and the report), and the study goes on.
"""

from __future__ import annotations

import importlib
import json
import logging
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from wmprobe._version import __version__
from wmprobe.auditing import runfolder
from wmprobe.auditing.many import ModelStatus, audit_many
from wmprobe.constants import DEFAULT_LAYERS
from wmprobe.errors import ImageFolderError, InvalidArgumentError, WmprobeError
from wmprobe.extraction.cache import slug
from wmprobe.extraction.engines import Engine
from wmprobe.models import PAPER20
from wmprobe.probes.artifacts import PAPER_SCENARIOS
from wmprobe.probes.images import scan_folder
from wmprobe.probes.scenario import Scenario, resolve_scenarios

log = logging.getLogger(__name__)

#: The paper's 20 ImageNet models, in its order (vit/beit come from timm).
PAPER_MODELS = PAPER20


@dataclass(frozen=True)
class StudyPreset:
    """A named study: which models, scenarios, layers and seed."""

    name: str
    models: tuple[str, ...]
    scenarios: tuple[str, ...] = PAPER_SCENARIOS
    layers: tuple[str, ...] = DEFAULT_LAYERS
    seed: int = 0


STUDY_PRESETS = {"paper": StudyPreset("paper", PAPER_MODELS)}


@dataclass
class StudyResult:
    """Where the study is, what happened to each model, to mitigation, and the report."""

    out: Path
    statuses: dict[str, ModelStatus] = field(default_factory=dict)
    mitigation: dict = field(default_factory=dict)
    report_html: Path | None = None


def versions() -> dict[str, str]:
    """Versions of wmprobe, Python and the packages that shape the numbers."""
    found = {"wmprobe": __version__, "python": platform.python_version()}
    for package in ("torch", "torchvision", "numpy", "scipy", "pandas", "pillow", "matplotlib"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["platform"] = platform.platform()
    return found


def _write_json(path: Path, data: dict) -> None:
    runfolder.write_file(path.parent, path.name, json.dumps(data, indent=2, default=str))


def mitigation_step(
    out: Path, downstream: Path | None, models: Sequence[str], say: Callable[[str], None]
) -> dict:
    """The hook for mitigation (``wmprobe mitigate``, built separately).

    Contract: when ``--downstream`` is given and the module ``wmprobe.mitigation`` defines
    ``reproduce_step(study_dir: Path, downstream: Path, models: list[str]) -> dict``, it is called
    with the study folder, the downstream image folder and the audited models, and its JSON-able
    result is stored in study.json under ``mitigation``. Otherwise the step is skipped and the
    reason logged and stored; nothing is faked. An error inside mitigation propagates.
    """
    if downstream is None:
        reason = "--downstream not given"
    else:
        try:
            module = importlib.import_module("wmprobe.mitigation")
        except ModuleNotFoundError as exc:
            if exc.name != "wmprobe.mitigation":
                raise
            module = None
        step = getattr(module, "reproduce_step", None) if module is not None else None
        if module is None:
            reason = "wmprobe.mitigation is not part of this installation"
        elif step is None:
            reason = "wmprobe.mitigation has no reproduce_step(study_dir, downstream, models)"
        else:
            say(f"mitigation on {downstream}")
            return {"status": "done", **step(out, downstream, list(models))}
    say(f"mitigation skipped: {reason}")
    return {"status": "skipped", "reason": reason}


def explain_step(
    out: Path, models: Sequence[str], device: str, say: Callable[[str], None]
) -> dict[str, str]:
    """``wmprobe explain`` on each model's run folder; per model ``done`` or the error."""
    from wmprobe.attribution import explain

    status = {}
    for model in models:
        try:
            explain(runfolder.model_folder(out, model), device=device, progress=say)
            status[model] = "done"
        except WmprobeError as exc:
            say(f"{model}: explain failed: {exc}")
            status[model] = f"{type(exc).__name__}: {exc}"
    return status


def reproduce(
    images: str | Path,
    out: str | Path,
    *,
    preset: str = "paper",
    models: Sequence[str] | None = None,
    scenarios: Sequence[str | Scenario] | None = None,
    downstream: str | Path | None = None,
    limit: int | None = None,
    seed: int | None = None,
    device: str = "auto",
    allow_download: bool = False,
    batch_size: int = 16,
    num_workers: int | None = None,
    progress: bool = True,
    command: str = "",
    report: bool = True,
    explain: bool = False,
    say: Callable[[str], None] | None = None,
    engine: Engine | None = None,
) -> StudyResult:
    """Run the whole study: sheets, one audit per model (resumable), report, mitigation hook.

    ``report=False`` leaves the report for a later ``wmprobe report OUT``. ``explain=True`` runs
    :func:`wmprobe.explain` (its defaults) on every audited model before the report. ``models`` and
    ``scenarios`` default to the preset's (for ``paper``: its 20 models and four scripts);
    ``scenarios`` takes whatever ``wmprobe audit --scenarios`` takes (presets with modifiers,
    spec files, probe folders). The models go through :func:`wmprobe.auditing.many.audit_many`;
    with a remote ``engine`` (Ray) every model's activations are computed at once on it first
    (:func:`wmprobe.extraction.spread.fill_cache`), then each model is audited from the cache.

    Example:
        >>> reproduce("../shared/data/imagenet-samples", "STUDY", models=["efficientnet_lite0"],
        ...           limit=50)  # doctest: +SKIP
    """
    from wmprobe.reporting import build_report
    from wmprobe.reporting.sheets import scenario_sheet

    say = say or log.info
    if preset not in STUDY_PRESETS:
        raise InvalidArgumentError(f"Unknown preset {preset!r}; known: {', '.join(STUDY_PRESETS)}.")
    spec = STUDY_PRESETS[preset]
    models = list(models) if models else list(spec.models)
    probe_sets = resolve_scenarios(list(scenarios) if scenarios else list(spec.scenarios))
    seed = spec.seed if seed is None else seed
    if downstream is not None and not Path(downstream).is_dir():
        raise ImageFolderError(f"Downstream folder {str(downstream)!r} does not exist.")
    out = runfolder.check_writable(out)
    image_set = scan_folder(Path(images).expanduser().resolve(), limit=limit)
    result = StudyResult(out=out)
    manifest = {
        "preset": preset,
        "command": command,
        "images": str(image_set.root),
        "models": models,
        "scenarios": [s.name for s in probe_sets],
        "scenario_definitions": [s.to_dict() for s in probe_sets],
        "layers": list(spec.layers),
        "seed": seed,
        "limit": limit,
        "downstream": str(downstream) if downstream is not None else None,
        "versions": versions(),
        "statuses": {},
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / runfolder.STUDY_JSON, manifest)
    sheets = out / runfolder.SHEETS_DIR
    say(f"contact sheets of {', '.join(s.name for s in probe_sets)} -> {sheets}")
    sheets.mkdir(exist_ok=True)
    for scenario in probe_sets:
        fig, data = scenario_sheet(image_set.records, scenario, seed=seed, n=12)
        stem = slug(scenario.name)
        runfolder.write_file(
            sheets, f"{stem}.png", lambda p, f=fig: f.savefig(p, format="png", dpi=100)
        )
        runfolder.write_file(sheets, f"{stem}.csv", data.to_csv(index=False))

    result.statuses = audit_many(
        image_set,
        out,
        models,
        scenarios=probe_sets,
        manifest=manifest,
        resume=True,
        command=command,
        allow_download=allow_download,
        limit=limit,
        say=say,
        layers=spec.layers,
        seed=seed,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
        engine=engine,
    )
    manifest["statuses"] = {m: asdict(s) for m, s in result.statuses.items()}

    def save_manifest() -> None:
        manifest["mitigation"] = result.mitigation
        _write_json(out / runfolder.STUDY_JSON, manifest)

    done = [m for m, s in result.statuses.items() if s.status != "skipped"]
    result.mitigation = mitigation_step(
        out, Path(downstream) if downstream is not None else None, done, say
    )
    save_manifest()
    if explain and done:
        manifest["explain"] = explain_step(out, done, device, say)
        save_manifest()
    if not done:
        reasons = "; ".join(f"{m}: {s.reason}" for m, s in result.statuses.items())
        raise WmprobeError(f"None of the {len(models)} model(s) could be audited ({reasons}).")
    if not report:
        return result
    say("report")
    result.report_html = build_report(out, progress=say).html
    return result

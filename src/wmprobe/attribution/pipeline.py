"""``explain``: where the most sensitive units of an audit look, scored against the drawn box.

For an audit run folder: the units to explain (:mod:`~wmprobe.attribution.selection`), for each
the probe images that move it most in the watermark's direction (ranked from the audit's cached
activations, exactly as ``top_images.parquet`` ranks them), the probe, clean and placebo frames
redrawn from (seed, image id, scenario), the unit's attribution maps on each
(:mod:`~wmprobe.attribution.maps`) and their scores against the box of the drawn mark
(:mod:`~wmprobe.attribution.scores`). Written to ``RUN/explain/`` (see :class:`Explanation`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from wmprobe._util import file_digest
from wmprobe.attribution.maps import UnitAttributor, check_methods
from wmprobe.attribution.overlays import OverlayRow, overlay_figure
from wmprobe.attribution.scores import iou, score_map, top_quantile_threshold
from wmprobe.attribution.selection import parse_units, select_units
from wmprobe.attribution.summary import join_units, unit_summary
from wmprobe.auditing import runfolder
from wmprobe.auditing.evidence import top_images_table
from wmprobe.errors import InvalidArgumentError, RunFolderError
from wmprobe.extraction.activations import extract
from wmprobe.extraction.cache import ActivationCache
from wmprobe.models import load_model
from wmprobe.probes.artifacts import NullArtifact, PlaceboArtifact
from wmprobe.probes.folder import FolderScenario
from wmprobe.probes.images import jpeg_roundtrip, load_frame, scan_folder
from wmprobe.probes.scenario import Scenario
from wmprobe.study.analysis import ModelRun, read_run

log = logging.getLogger(__name__)

#: Written last: an explain folder without it is unfinished.
EXPLAIN_JSON = "explain.json"

#: What ``localization.parquet`` holds, one row per (unit, method, image).
LOCALIZATION_COLUMNS = [
    "model", "layer", "scenario", "unit", "class_name", "auc", "d", "method", "image_rank",
    "image_id", "box_left", "box_top", "box_right", "box_bottom", "mass", "rank_accuracy", "hit",
    "chance", "clean_mass", "clean_rank_accuracy", "clean_hit", "placebo", "placebo_mass",
    "placebo_rank_accuracy", "placebo_hit", "iou", "clean_iou", "placebo_iou",
]  # fmt: skip


@dataclass
class Explanation:
    """What :func:`explain` wrote to ``folder``: ``localization.parquet`` (:attr:`localization`),
    ``localization_units.parquet`` and ``.csv`` (:attr:`units`: the per-unit summary joined to the
    audit's unit table), ``overlays/*.png`` and ``explain.json`` (:attr:`config`)."""

    folder: Path
    localization: pd.DataFrame
    units: pd.DataFrame
    overlays: list[Path] = field(default_factory=list)
    config: dict = field(default_factory=dict)


def run_scenarios(run: ModelRun) -> list[Scenario]:
    """The scenarios of an audit run, as its run.json stores them (the very artifacts it drew)."""
    scenarios = list(runfolder.run_scenarios(run.config).values())
    if not scenarios:
        raise RunFolderError(f"{run.path / 'run.json'} names no scenarios.")
    return scenarios


def text_and_placebos(scenarios: Sequence[Scenario]) -> dict[str, tuple[Scenario, list[Scenario]]]:
    """The scenarios with a drawn mark (not a placebo, the null or a probe folder), each with the
    placebos of the same stream (so the same box) and the same probe-side JPEG."""
    out: dict[str, tuple[Scenario, list[Scenario]]] = {}
    for s in scenarios:
        if isinstance(s, FolderScenario) or isinstance(s.artifact, NullArtifact | PlaceboArtifact):
            continue
        placebos = [
            p
            for p in scenarios
            if isinstance(p.artifact, PlaceboArtifact)
            and p.stream_name == s.stream_name
            and p.jpeg_probe_quality == s.jpeg_probe_quality
        ]
        out[s.name] = (s, placebos)
    return out


def _frames(pick, scenario: Scenario, placebo: Scenario | None, seed: int, jpeg: int | None):
    frame = load_frame(pick.path)
    drawn = scenario.draw(frame, seed=seed, image_id=pick.image_id)
    if drawn.text != pick.text:
        raise RunFolderError(
            f"The probe of {pick.image_id} redrawn for {scenario.name} differs from the audited "
            "one (another wmprobe version drew it?); audit the run again."
        )
    if drawn.bbox is None:
        return None
    frames = {"clean": frame, "probe": drawn.image}
    if placebo is not None:
        p = placebo.draw(frame, seed=seed, image_id=pick.image_id)
        if p.bbox != drawn.bbox:
            raise RunFolderError(f"The placebo box of {pick.image_id} is not the text's box.")
        frames["placebo"] = p.image
    if jpeg is not None:
        frames = {k: jpeg_roundtrip(v, jpeg) for k, v in frames.items()}
    return drawn.bbox, {k: np.asarray(v.convert("RGB"), dtype=np.uint8) for k, v in frames.items()}


def _maps(att: UnitAttributor, frames: np.ndarray, unit: int, method: str, sign: float, batch: int):
    parts = [
        att.maps(frames[i : i + batch], unit, method, sign) for i in range(0, len(frames), batch)
    ]
    return np.concatenate(parts)


def explain(
    run: str | Path,
    *,
    units: str = "top:8",
    methods: str | Sequence[str] = ("gradcam", "activation"),
    images: int = 16,
    out: str | Path | None = None,
    device: str = "auto",
    ig_steps: int = 16,
    quantile: float = 0.005,
    overlay_images: int = 4,
    batch_size: int = 16,
    progress: Callable[[str], None] | None = None,
) -> Explanation:
    """Explain the most sensitive units of the audit at ``run``: where their attribution falls.

    ``units``: ``top:N`` and/or ``LAYER:UNIT`` (see :func:`~wmprobe.attribution.selection.
    parse_units`); ``methods``: ``gradcam``, ``ig``, ``lrp``, ``activation``; ``images``: probe
    images per unit (those that move it most); ``quantile``: NetDissect's top quantile for the IoU
    of ``activation`` maps; ``overlay_images``: images per overlay PNG. Writes to ``out``
    (default ``RUN/explain``).

    Example:
        >>> ex = explain("RUN", units="top:8", methods="gradcam,lrp")  # doctest: +SKIP
        >>> ex.units[["layer", "unit", "method", "mass", "chance", "localized"]]  # doctest: +SKIP
    """
    say = progress or log.info
    methods = check_methods(methods)
    for name, value in (("images", images), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"Expected argument `{name}` to be >= 1 but got {value!r}")
    spec = parse_units(units)
    model_run = read_run(run)
    cfg = model_run.config
    texts = text_and_placebos(run_scenarios(model_run))
    if not texts:
        raise RunFolderError(
            f"{model_run.path} audited no scenario with a drawn mark "
            f"({', '.join(cfg['scenarios'])}): nothing has a box to explain against."
        )
    chosen = select_units(model_run.table, list(texts), spec)
    seed, jpeg = int(cfg.get("seed", 0)), cfg.get("jpeg_quality")
    loaded = load_model(cfg["model"], pretrained=bool(cfg.get("pretrained", True)), device=device)
    image_set = scan_folder(
        cfg["images"], keep_watermarked=bool(cfg.get("keep_watermarked")), limit=cfg.get("limit")
    )
    say(f"explain: ranking images from the activations of {len(chosen)} unit(s)")
    acts = extract(
        loaded,
        image_set.records,
        [texts[s][0] for s in dict.fromkeys(chosen["scenario"])],
        seed=seed,
        layers=list(dict.fromkeys(chosen["layer"])),
        progress=False,
        cache=ActivationCache(cfg["cache"]) if cfg.get("cache") else None,
        reduction=cfg.get("reduction", "mean"),
        dtype=cfg.get("dtype", "float32"),
        jpeg_quality=jpeg,
    )
    per_group = int(chosen.groupby(["scenario", "layer"]).size().max())
    picks = top_images_table(acts, chosen, image_set.records, units=per_group, images=images)
    folder = Path(out) if out is not None else model_run.path / "explain"
    (folder / "overlays").mkdir(parents=True, exist_ok=True)
    (folder / EXPLAIN_JSON).unlink(missing_ok=True)  # a folder being rewritten is not finished
    for old in (folder / "overlays").glob("*.png"):
        old.unlink()
    attributors: dict[str, UnitAttributor] = {}
    rows: list[dict] = []
    overlays: list[Path] = []
    seconds = {m: 0.0 for m in methods}
    pairs = {m: 0 for m in methods}
    for (scenario_name, layer, unit), group in picks.groupby(
        ["scenario", "layer", "unit"], sort=False
    ):
        scenario, placebos = texts[scenario_name]
        placebo = placebos[0] if placebos else None
        if layer not in attributors:
            attributors[layer] = UnitAttributor(
                loaded, layer, reduction=cfg.get("reduction", "mean"), ig_steps=ig_steps
            )
        att = attributors[layer]
        group = group.sort_values("image_rank")
        drawn = [(p, _frames(p, scenario, placebo, seed, jpeg)) for p in group.itertuples()]
        drawn = [(p, d) for p, d in drawn if d is not None]
        if not drawn:
            continue
        variants = list(drawn[0][1][1])
        stack = np.stack([d[1][v] for v in variants for _, d in drawn])
        first = group.iloc[0]
        sign = 1.0 if float(first["auc"]) >= 0.5 else -1.0
        say(f"explain: {scenario_name} {layer} {unit} ({len(drawn)} images)")
        for method in methods:
            if not att.supports(method):
                continue
            start = time.perf_counter()
            maps = _maps(att, stack, int(unit), method, sign, batch_size)
            seconds[method] += time.perf_counter() - start
            pairs[method] += len(drawn)
            maps = maps.reshape(len(variants), len(drawn), *maps.shape[1:])
            threshold = top_quantile_threshold(maps, quantile) if method == "activation" else None
            overlay_rows, captions = [], []
            for i, (pick, (box, frames)) in enumerate(drawn):
                rec = {
                    "model": model_run.name, "layer": layer, "scenario": scenario_name,
                    "unit": int(unit), "class_name": pick.class_name, "auc": float(pick.auc),
                    "d": float(pick.d), "method": method, "image_rank": int(pick.image_rank),
                    "image_id": pick.image_id, "box_left": box[0], "box_top": box[1],
                    "box_right": box[2], "box_bottom": box[3],
                    "placebo": placebo.name if placebo is not None else None,
                }  # fmt: skip
                for v, variant in enumerate(variants):
                    s = score_map(maps[v, i], box)
                    prefix = "" if variant == "probe" else f"{variant}_"
                    rec[f"{prefix}mass"] = s.mass
                    rec[f"{prefix}rank_accuracy"] = s.rank_accuracy
                    rec[f"{prefix}hit"] = s.hit
                    rec["chance"] = s.chance
                    if threshold is not None:
                        rec[f"{prefix}iou"] = iou(maps[v, i], box, threshold)
                rows.append(rec)
                if i < overlay_images:
                    overlay_rows.append(
                        OverlayRow(
                            pick.image_id,
                            box,
                            {k: frames[k] for k in variants},
                            {k: maps[v, i] for v, k in enumerate(variants)},
                        )
                    )
                    captions.append(f"mass {rec['mass']:.2f} (chance {rec['chance']:.2f})")
            name = f"{scenario_name}__{layer}__{int(unit)}__{method}.png".replace("/", "_")
            label = pick.class_name if isinstance(pick.class_name, str) else ""
            title = f"{model_run.name} {scenario_name} {layer} {int(unit)} {label}"
            fig = overlay_figure(overlay_rows, f"{title}: {method}", captions)
            overlays.append(
                runfolder.write_file(
                    folder / "overlays", name, lambda p, f=fig: f.savefig(p, format="png")
                )
            )
    table = pd.DataFrame(rows).reindex(columns=LOCALIZATION_COLUMNS)
    summary = join_units(unit_summary(table), model_run.table) if len(table) else table
    config = {
        "run": str(model_run.path),
        "run_json_sha256": file_digest(model_run.path / "run.json"),
        "model": model_run.name,
        "units": units,
        "methods": list(methods),
        "images": images,
        "ig_steps": ig_steps,
        "activation_quantile": quantile,
        "seed": seed,
        "lrp_canonizers": (
            next(iter(attributors.values())).canonizers
            if "lrp" in methods and attributors
            else None
        ),
        "spatial_layers": {k: a.spatial for k, a in attributors.items()},
        "seconds_per_unit_image": {
            m: (seconds[m] / pairs[m] if pairs[m] else None) for m in methods
        },
        "maps_per_unit_image": 2 + int(any(p for _, p in texts.values())),
    }
    write = runfolder.write_file
    write(folder, "localization.parquet", lambda p: table.to_parquet(p, index=False))
    write(folder, "localization_units.parquet", lambda p: summary.to_parquet(p, index=False))
    write(folder, "localization_units.csv", lambda p: summary.to_csv(p, index=False))
    write(folder, EXPLAIN_JSON, json.dumps(config, indent=2))  # last: the folder is finished
    return Explanation(
        folder=folder, localization=table, units=summary, overlays=overlays, config=config
    )

"""Writing a probe set to disk: probe images, a manifest and a contact sheet.

``OUT/probes/<image id>.png`` (lossless), ``OUT/manifest.jsonl`` (one row per probe: source,
image id, text drawn, box, seed, spec hash), ``OUT/probe_set.json`` (the scenario's whole spec,
its hash, the seed, the images left out or skipped) and ``OUT/contact_sheet.png``. Such a folder
can be audited again as ``folder:OUT``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from wmprobe._util import atomic_write
from wmprobe._version import __version__
from wmprobe.errors import InvalidArgumentError, ProbeFolderError
from wmprobe.probes.contact_sheet import contact_sheet
from wmprobe.probes.folder import PROBES_DIR, FolderScenario
from wmprobe.probes.images import ImageSet, load_frame, scan_folder
from wmprobe.probes.manifest import MANIFEST_NAME, ManifestRow, write_manifest
from wmprobe.probes.scenario import Scenario, resolve_scenarios

#: Formats of the written probe images: PNG is lossless; JPEG is written at PIL's default (75).
FORMATS = {"png": ".png", "jpeg": ".jpg"}


@dataclass
class GeneratedSet:
    """What :func:`generate` wrote for one scenario."""

    scenario: str
    out: Path
    rows: list[ManifestRow]
    skipped: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    contact_sheet: Path | None = None


def generate(
    scenarios: str | Scenario | Sequence[str | Scenario],
    images: str | Path | ImageSet,
    out: str | Path,
    *,
    seed: int = 0,
    limit: int | None = None,
    keep_watermarked: bool = False,
    image_format: str = "png",
    sheet_pairs: int = 8,
    progress: bool = False,
) -> list[GeneratedSet]:
    """Draw the probe set of each scenario over ``images`` and write it under ``out``.

    One scenario is written to ``out`` itself; several (e.g. a spec file with a sweep) each to
    ``out/<scenario name>``. Unreadable images are skipped and listed in ``probe_set.json``.

    Example:
        >>> images = "../shared/data/imagenet-samples"
        >>> sets = generate("chinese", images, "probes", limit=8)  # doctest: +SKIP
        >>> sets[0].rows[0].text  # doctest: +SKIP
    """
    if image_format not in FORMATS:
        raise InvalidArgumentError(
            f"Expected argument `image_format` to be one of {', '.join(FORMATS)} "
            f"but got {image_format!r}"
        )
    items = [scenarios] if isinstance(scenarios, str | Scenario) else list(scenarios)
    resolved: list[Scenario] = []
    for item in items:
        resolved += [item] if isinstance(item, Scenario) else resolve_scenarios([item])
    for scenario in resolved:
        if isinstance(scenario, FolderScenario):
            raise ProbeFolderError(
                f"{scenario.name} is already a probe set; generate draws presets and spec files."
            )
    image_set = (
        images
        if isinstance(images, ImageSet)
        else scan_folder(images, keep_watermarked=keep_watermarked, limit=limit)
    )
    out = Path(out)
    return [
        _generate_one(
            s,
            image_set,
            out if len(resolved) == 1 else out / s.name,
            seed=seed,
            suffix=FORMATS[image_format],
            sheet_pairs=sheet_pairs,
            progress=progress,
        )
        for s in resolved
    ]


def _generate_one(
    scenario: Scenario,
    image_set: ImageSet,
    out: Path,
    *,
    seed: int,
    suffix: str,
    sheet_pairs: int,
    progress: bool,
) -> GeneratedSet:
    from tqdm.auto import tqdm

    (out / PROBES_DIR).mkdir(parents=True, exist_ok=True)
    spec_hash = scenario.spec_hash()
    rows: list[ManifestRow] = []
    skipped: dict[str, str] = {}
    pairs: list[tuple[str, Image.Image, Image.Image]] = []
    records = tqdm(image_set.records, desc=scenario.name, unit="img", disable=not progress)
    for record in records:
        try:
            frame = load_frame(record.path)
        except Exception as exc:  # noqa: BLE001 - any unreadable image is a counted skip
            skipped[record.image_id] = f"{type(exc).__name__}: {exc}"
            continue
        drawn = scenario.draw(frame, seed=seed, image_id=record.image_id)
        rel = f"{PROBES_DIR}/{record.image_id}{suffix}"
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        drawn.image.save(target)  # PNG lossless; JPEG at PIL's default quality (75)
        rows.append(
            ManifestRow(
                source=str(record.path),
                image_id=record.image_id,
                scenario=scenario.name,
                stream=scenario.stream_name,
                text=drawn.text,
                bbox=drawn.bbox,
                seed=seed,
                spec_hash=spec_hash,
                probe_file=rel,
            )
        )
        if len(pairs) < sheet_pairs:
            pairs.append((record.image_id, frame, drawn.image))
    write_manifest(out / MANIFEST_NAME, rows)
    sheet_path = None
    if pairs:
        sheet = contact_sheet(
            [[clean, probe] for _, clean, probe in pairs],
            captions=[image_id for image_id, _, _ in pairs],
            titles=["clean", scenario.name],
        )
        sheet_path = out / "contact_sheet.png"
        sheet.save(sheet_path, optimize=True)
    info = {
        "scenario": scenario.to_dict(),
        "description": scenario.describe(),
        "spec_hash": spec_hash,
        "seed": seed,
        "images": str(image_set.root),
        "probes": len(rows),
        "images_excluded": image_set.excluded,
        "images_skipped": skipped,
        "wmprobe_version": __version__,
    }
    atomic_write(out / "probe_set.json", json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return GeneratedSet(
        scenario=scenario.name,
        out=out,
        rows=rows,
        skipped=skipped,
        excluded=dict(image_set.excluded),
        contact_sheet=sheet_path,
    )

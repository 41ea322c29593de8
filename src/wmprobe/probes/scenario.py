"""Probe sets: each baseline image and the same image with an artifact drawn, seeded per image.

A scenario is named by a string that :func:`resolve_scenarios` understands:

* a preset (``chinese``, ``latin``, ``hindi``, ``numerals``, ``imagenet_w``, ``null``);
* modifiers after ``+``: ``+placebo_box``, ``+placebo_noise``, ``+placebo_blur`` (the text's box
  filled with something that is not text; same random stream, so the same box), and
  ``+jpeg_probe`` (the probe side alone JPEG-encoded at quality 75, PIL's default, as the paper's
  generator did) or ``+jpeg_probe_qN`` (at quality N);
* a spec file ``FILE.toml`` (every scenario it defines, sweeps expanded; see ``specfile.py``);
* ``folder:PATH``: ready-made probe images paired with the clean images by relative path stem.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from wmprobe.errors import (
    InvalidArgumentError,
    ScenarioSpecError,
    UnknownScenarioError,
    WmprobeError,
)
from wmprobe.probes import images
from wmprobe.probes.artifacts import (
    PLACEBO_FILLS,
    PRESETS,
    Artifact,
    Drawn,
    NullArtifact,
    PlaceboArtifact,
)
from wmprobe.probes.artifacts.presets import unknown_message
from wmprobe.probes.images import FRAME_SIZE, jpeg_roundtrip

#: Bumped whenever the drawing code changes pixels for an unchanged spec (it is in every hash).
DRAW_VERSION = 1

#: The probe-side JPEG quality of ``+jpeg_probe``: PIL's default, which the paper's generator used.
PAPER_JPEG_QUALITY = 75

#: Characters a scenario name may hold (``+`` and ``@`` join modifiers and swept values).
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-+@=]*$")
_JPEG_MOD = re.compile(r"^jpeg_probe(?:_q(\d+))?$")


def probe_rng(seed: int, image_id: str, scenario: str) -> np.random.Generator:
    """The random stream of one probe image, from (seed, image id, scenario) alone.

    Any one probe image can be drawn again alone, in any order and in any process.

    Example:
        >>> draw = lambda seed: probe_rng(seed, "n01440764_tench", "chinese").integers(0, 100, 3)
        >>> draw(0).tolist() == draw(0).tolist(), draw(0).tolist() == draw(1).tolist()
        (True, False)
    """
    digest = hashlib.sha256(f"{image_id}\x00{scenario}".encode()).digest()
    words = np.frombuffer(digest[:16], dtype=np.uint32).tolist()
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def check_jpeg_quality(value: object, name: str = "jpeg_probe_quality") -> int | None:
    """``value`` if it is None or an integer quality in [1, 95]; else a named error."""
    if value is None:
        return None
    try:
        return images.check_jpeg_quality(value, name)
    except InvalidArgumentError as exc:
        raise ScenarioSpecError(str(exc)) from None


@dataclass(frozen=True)
class Scenario:
    """A named artifact: what is drawn on every image of one probe set.

    Attributes:
        name: the scenario's name (the ``scenario`` column of the audit's table).
        artifact: what is drawn.
        stream: the name that keys the per-image random stream (default: ``name``). Scenarios
            that share a stream draw the same strings and boxes: a placebo shares its text's.
        jpeg_probe_quality: JPEG-encode the probe side alone at this quality after drawing (the
            paper's asymmetric condition); None: no re-encoding.

    Example:
        >>> sc = Scenario.preset("latin+placebo_box")
        >>> sc.stream_name, len(sc.spec_hash())
        ('latin', 64)
    """

    name: str
    artifact: Artifact
    stream: str | None = None
    jpeg_probe_quality: int | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name) or self.name == "clean":
            raise ScenarioSpecError(
                f"Expected a scenario name of letters, digits and _ . - + @ = (not 'clean') "
                f"but got {self.name!r}"
            )
        check_jpeg_quality(self.jpeg_probe_quality)

    @property
    def stream_name(self) -> str:
        """The name that keys the random stream."""
        return self.stream or self.name

    @classmethod
    def preset(cls, name: str) -> Scenario:
        """A preset, with modifiers: ``chinese``, ``hindi+placebo_blur``, ``null+jpeg_probe``."""
        base, *mods = name.split("+")
        if base not in PRESETS:
            raise UnknownScenarioError(unknown_message(name, list(PRESETS)))
        scenario = cls(name=base, artifact=PRESETS[base], description=PRESETS[base].describe())
        return with_modifiers(scenario, mods)

    def draw(self, frame: Image.Image, *, seed: int, image_id: str) -> Drawn:
        """The probe image of ``frame``: reproducible from (seed, image id, stream name)."""
        drawn = self.artifact.draw(frame, probe_rng(seed, image_id, self.stream_name))
        if self.jpeg_probe_quality is not None:
            image = jpeg_roundtrip(drawn.image, self.jpeg_probe_quality)
            drawn = Drawn(image=image, text=drawn.text, bbox=drawn.bbox)
        return drawn

    def to_dict(self) -> dict[str, Any]:
        """The whole specification as JSON-able values; :meth:`from_dict` rebuilds it exactly.

        run.json stores it for every scenario of an audit, so that later steps (the report's
        contact sheets and unit evidence, reproduce, mitigate) redraw the very probes the audit
        drew, whatever defined them (a preset, a spec file, a sweep, a probe folder).

        Example:
            >>> sc = Scenario.preset("latin+placebo_box+jpeg_probe")
            >>> Scenario.from_dict(sc.to_dict()).spec_hash() == sc.spec_hash()
            True
        """
        return {
            "name": self.name,
            "stream": self.stream,
            "jpeg_probe_quality": self.jpeg_probe_quality,
            "description": self.description,
            "artifact": self.artifact.to_spec(),
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Scenario:
        """The scenario that :meth:`to_dict` wrote (a :class:`FolderScenario` for a folder)."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ScenarioSpecError(f"Expected a scenario spec with a `name` but got {data!r}")
        if "folder" in data:
            from wmprobe.probes.folder import FolderScenario

            return FolderScenario.from_dict(data)
        unknown = set(data) - {"name", "stream", "jpeg_probe_quality", "description", "artifact"}
        if unknown or "artifact" not in data:
            raise ScenarioSpecError(
                f"The scenario spec of {data['name']!r} does not fit (keys {sorted(data)})."
            )
        return Scenario(
            name=data["name"],
            artifact=Artifact.from_spec(data["artifact"]),
            stream=data.get("stream"),
            jpeg_probe_quality=data.get("jpeg_probe_quality"),
            description=str(data.get("description") or ""),
        )

    def spec_hash(self) -> str:
        """A stable hex digest (sha256) of the whole spec and the files it reads.

        Equal hashes mean equal pixels for equal (seed, image id, frame); activation caches key on
        it. It covers the drawing-code version, the name, the stream, every artifact parameter and
        the bytes of font files given by path and of overlay images.
        """
        payload = {
            "draw_version": DRAW_VERSION,
            "name": self.name,
            "stream": self.stream_name,
            "jpeg_probe_quality": self.jpeg_probe_quality,
            "artifact": self.artifact.to_dict(),
            "content": self.artifact.content(),
        }
        return _digest(payload)

    def describe(self) -> str:
        """A one-line human description."""
        text = self.description or self.artifact.describe()
        if self.jpeg_probe_quality is not None:
            text += f"; probe side alone JPEG-encoded at quality {self.jpeg_probe_quality}"
        return text

    def check_ready(self) -> None:
        """Raise a named error now if drawing would fail: a missing font, file or package, or an
        artifact that cannot fit on the 224x224 frame."""
        self.artifact.check_ready()
        self.artifact.check_fits((FRAME_SIZE, FRAME_SIZE))


def with_modifiers(scenario: Scenario, mods: Sequence[str]) -> Scenario:
    """``scenario`` with ``+`` modifiers applied (placebo first, then JPEG), named canonically.

    Example:
        >>> with_modifiers(Scenario.preset("latin"), ["jpeg_probe_q50", "placebo_box"]).name
        'latin+placebo_box+jpeg_probe_q50'
    """
    placebo, quality = None, scenario.jpeg_probe_quality
    for mod in mods:
        jpeg = _JPEG_MOD.match(mod)
        if mod.startswith("placebo_") and mod[len("placebo_") :] in PLACEBO_FILLS:
            if placebo is not None:
                raise ScenarioSpecError(f"Only one placebo per scenario, but got {mods!r}.")
            placebo = mod[len("placebo_") :]
        elif jpeg:
            quality = check_jpeg_quality(
                int(jpeg.group(1)) if jpeg.group(1) else PAPER_JPEG_QUALITY
            )
        else:
            fills = ", ".join(f"+placebo_{f}" for f in PLACEBO_FILLS)
            raise UnknownScenarioError(
                f"Unknown modifier {mod!r} in scenario {'+'.join([scenario.name, *mods])!r}; "
                f"known: {fills}, +jpeg_probe, +jpeg_probe_qN (see `wmprobe scenarios`)."
            )
    artifact, name = scenario.artifact, scenario.name
    if placebo is not None:
        if isinstance(artifact, NullArtifact):
            raise ScenarioSpecError(f"{name!r} draws nothing, so it has no placebo.")
        artifact, name = PlaceboArtifact(artifact, placebo), f"{name}+placebo_{placebo}"
    if quality is not None and quality != scenario.jpeg_probe_quality:
        suffix = "jpeg_probe" if quality == PAPER_JPEG_QUALITY else f"jpeg_probe_q{quality}"
        name = f"{name}+{suffix}"
    if name == scenario.name:
        return scenario
    return dataclasses.replace(
        scenario,
        name=name,
        artifact=artifact,
        stream=scenario.stream_name,
        jpeg_probe_quality=quality,
        description="",
    )


def resolve_scenarios(items: str | Scenario | Sequence[str | Scenario]) -> list[Scenario]:
    """The scenarios named by ``items``: presets (with modifiers), spec files, probe folders.

    The one resolver of scenario names: ``NAME[+modifiers]``, ``FILE.toml`` (every scenario it
    defines), ``folder:PATH``, or :class:`Scenario` objects (kept as they are, e.g. rebuilt with
    :meth:`Scenario.from_dict` from a run's run.json). Everything is checked before any image is
    read: unknown names (the error lists the presets and points to ``wmprobe scenarios``), bad
    spec files, missing folders or packages, duplicates.

    Example:
        >>> [s.name for s in resolve_scenarios(["null", "null+jpeg_probe", "chinese+placebo_box"])]
        ['null', 'null+jpeg_probe', 'chinese+placebo_box']
    """
    from wmprobe.probes.folder import FolderScenario
    from wmprobe.probes.specfile import load_spec_file

    if isinstance(items, str | Scenario):
        items = [items]
    scenarios: list[Scenario] = []
    for item in items:
        if isinstance(item, Scenario):
            scenarios.append(item)
            continue
        item = item.strip()
        if item.startswith("folder:"):
            scenarios.append(FolderScenario.from_path(item[len("folder:") :]))
        elif item.lower().endswith(".toml"):
            scenarios.extend(load_spec_file(item))
        else:
            scenarios.append(Scenario.preset(item))
    seen: set[str] = set()
    for scenario in scenarios:
        if scenario.name in seen:
            raise ScenarioSpecError(
                f"Scenario {scenario.name!r} is given twice; each name must be unique in one run."
            )
        seen.add(scenario.name)
        scenario.check_ready()
    return scenarios


def catalog() -> list[tuple[str, str]]:
    """Every named scenario with its description: presets, their placebos, and JPEG variants.

    Example:
        >>> names = [name for name, _ in catalog()]
        >>> names[:4], "chinese+placebo_box" in names, "null+jpeg_probe" in names
        (['chinese', 'latin', 'hindi', 'numerals'], True, True)
    """
    rows = []
    for name in PRESETS:
        scenario = Scenario.preset(name)
        try:
            scenario.check_ready()
            rows.append((name, scenario.describe()))
        except WmprobeError as exc:
            rows.append((name, f"{scenario.describe()} [not ready: {exc}]"))
    for name, artifact in PRESETS.items():
        if isinstance(artifact, NullArtifact):
            continue
        for fill in PLACEBO_FILLS:
            sc = Scenario.preset(f"{name}+placebo_{fill}")
            rows.append((sc.name, sc.describe()))
    for name in ("null+jpeg_probe", "chinese+jpeg_probe"):
        rows.append((name, Scenario.preset(name).describe()))
    return rows


def _digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

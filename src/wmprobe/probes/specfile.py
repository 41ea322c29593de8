"""Scenario spec files (TOML): users' own artifacts, sweeps and placebos, as scenarios.

One table per scenario under ``[scenarios.NAME]``; its keys are the artifact's fields (see
``TextArtifact``, ``ImageOverlay``, ``ImageNetWArtifact``) plus these:

* ``preset``: start from a preset's artifact and change only the keys given; the scenario then
  shares the preset's random stream (the same strings per image) unless ``stream`` is given;
* ``kind``: ``text``, ``image``, ``imagenet_w`` or ``none``; inferred from ``preset``, ``image``
  or ``text``/``charset`` when left out;
* ``stream``: the name that keys the per-image random stream (default: the table's name);
* ``jpeg_probe_quality``: JPEG-encode the probe side alone at this quality;
* ``placebos``: a list among ``box``, ``noise``, ``blur``: adds ``NAME+placebo_box`` etc.;
* ``description``: free text.

Files (``image``, a ``font`` that is not a family name) are relative to the spec file.

A list where one value is expected is a sweep: one scenario per value, named
``NAME@key=value`` (several swept keys: every combination, ``NAME@a=1@b=2``), all sharing the
table's stream, so a dose-response curve compares the same strings at each dose. Colours
(``[255, 0, 0]``), positions (``[0.1, 0.9]``) and charsets are lists by nature; they sweep when
given as a list of such values (``color = ["red", [0, 0, 255]]``). A file expands to at most
:data:`MAX_SCENARIOS` scenarios (placebos included); more is refused before any is made.

Example file::

    [scenarios.chinese_opacity]
    preset = "chinese"
    opacity = [0.1, 0.25, 0.5, 1.0]
    placebos = ["box"]

    [scenarios.url]
    text = "www.stock-images.example"
    relative_size = 0.06
    position = "bottom-right"
    margin = 4
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import sys
from pathlib import Path
from typing import Any

from wmprobe.errors import ScenarioSpecError, UnknownScenarioError
from wmprobe.probes.artifacts import (
    PLACEBO_FILLS,
    PRESETS,
    Artifact,
    ImageNetWArtifact,
    ImageOverlay,
    NullArtifact,
    TextArtifact,
)
from wmprobe.probes.artifacts.fonts import FAMILIES
from wmprobe.probes.scenario import Scenario, with_modifiers

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

KINDS: dict[str, type[Artifact]] = {
    "text": TextArtifact,
    "image": ImageOverlay,
    "imagenet_w": ImageNetWArtifact,
    "none": NullArtifact,
}
SCENARIO_KEYS = ("preset", "kind", "stream", "jpeg_probe_quality", "placebos", "description")
#: Keys whose single value is itself a list; they sweep only as a list of such values.
_LIST_VALUED = {"color", "stroke_color", "position", "charset"}
#: The most scenarios a spec file may expand to (each costs a pass over every image).
MAX_SCENARIOS = 10_000
_NEVER_SWEPT = {"preset", "kind", "stream", "placebos", "description", "charset"}
_SIMPLE = re.compile(r"^[A-Za-z0-9_.\-]{1,24}$")
_TABLE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def load_spec_file(path: str | Path) -> list[Scenario]:
    """Every scenario a TOML spec file defines, sweeps expanded, placebos added, in file order.

    Example:
        >>> scenarios = load_spec_file("my_spec.toml")  # doctest: +SKIP
        >>> [s.name for s in scenarios]  # doctest: +SKIP
        ['chinese_opacity@opacity=0.1', ..., 'chinese_opacity@opacity=1+placebo_box']
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ScenarioSpecError(f"The spec file {str(path)!r} does not exist.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioSpecError(f"{path}: not valid TOML ({exc}).") from exc
    return parse_spec(data, base_dir=path.parent, source=str(path))


def parse_spec(data: dict[str, Any], *, base_dir: Path, source: str = "<spec>") -> list[Scenario]:
    """The scenarios of a parsed spec (``{"scenarios": {NAME: {...}}}``); see the module doc."""
    extra = set(data) - {"scenarios"}
    tables = data.get("scenarios")
    if extra or not isinstance(tables, dict) or not tables:
        raise ScenarioSpecError(
            f"{source}: expected one or more [scenarios.NAME] tables"
            + (f", but found top-level keys {sorted(extra)}" if extra else "")
            + "."
        )
    out: list[Scenario] = []
    for name, table in tables.items():
        where = f"{source}: [scenarios.{name}]"
        if not isinstance(table, dict):
            raise ScenarioSpecError(f"{where}: expected a table of keys, got {table!r}.")
        if not _TABLE.match(name):
            raise ScenarioSpecError(
                f"{where}: a scenario name is letters, digits and _ . - (no + @ , or spaces)."
            )
        try:
            out.extend(_scenarios_of_table(name, table, base_dir, before=len(out)))
        except ScenarioSpecError as exc:
            raise ScenarioSpecError(f"{where}: {exc}") from exc
        except (UnknownScenarioError, TypeError) as exc:
            raise ScenarioSpecError(f"{where}: {exc}") from exc
    return out


def _scenarios_of_table(
    name: str, table: dict[str, Any], base_dir: Path, *, before: int = 0
) -> list[Scenario]:
    kind, base = _kind_and_base(table)
    cls = KINDS[kind]
    allowed = {f.name for f in dataclasses.fields(cls)} | set(SCENARIO_KEYS)  # type: ignore[arg-type]
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ScenarioSpecError(
            f"unknown key(s) {', '.join(unknown)} for a {kind} artifact; known: "
            f"{', '.join(sorted(allowed))}."
        )
    placebos = table.get("placebos", [])
    if not isinstance(placebos, list) or not set(placebos) <= set(PLACEBO_FILLS):
        raise ScenarioSpecError(
            f"expected `placebos` to be a list among {', '.join(PLACEBO_FILLS)} "
            f"but got {placebos!r}"
        )
    swept = {k: v for k, v in table.items() if _is_sweep(k, v)}
    for key, values in swept.items():
        if not values:
            raise ScenarioSpecError(f"the sweep `{key}` is an empty list.")
    count = math.prod(len(v) for v in swept.values()) * (1 + len(placebos))
    if before + count > MAX_SCENARIOS:
        raise ScenarioSpecError(
            f"the sweep expands to {count:,} scenarios ({before:,} before this table); at most "
            f"{MAX_SCENARIOS:,} per file, as each one is a pass over every image. Use fewer "
            "values or split the sweep over several runs."
        )
    fixed = {k: v for k, v in table.items() if k not in swept}
    stream = fixed.get("stream", table.get("preset", name))
    scenarios = []
    for combo in itertools.product(*(list(enumerate(v)) for v in swept.values())):
        values = dict(fixed)
        label = name
        for key, (index, value) in zip(swept, combo, strict=True):
            values[key] = value
            label += f"@{key}={_label(value, index)}"
        scenario = _one(label, kind, base, values, base_dir, stream)
        scenarios.append(scenario)
        scenarios += [with_modifiers(scenario, [f"placebo_{p}"]) for p in placebos]
    return scenarios


def _kind_and_base(table: dict[str, Any]) -> tuple[str, Artifact | None]:
    base = None
    if "preset" in table:
        preset = table["preset"]
        if not isinstance(preset, str) or preset not in PRESETS:
            raise ScenarioSpecError(
                f"expected `preset` to be one of {', '.join(PRESETS)} but got {preset!r}"
            )
        base = PRESETS[preset]
        inferred = base.kind
    elif "image" in table:
        inferred = "image"
    elif "text" in table or "charset" in table:
        inferred = "text"
    else:
        inferred = table.get("kind")
    kind = table.get("kind", inferred)
    if kind not in KINDS or (inferred is not None and kind != inferred):
        raise ScenarioSpecError(
            f"cannot tell what to draw: give `preset`, `text`, `charset`, `image` or `kind` "
            f"(one of {', '.join(KINDS)})"
            + (f"; `kind` {kind!r} contradicts the other keys ({inferred})" if inferred else "")
            + "."
        )
    return kind, base


def _one(
    label: str,
    kind: str,
    base: Artifact | None,
    values: dict[str, Any],
    base_dir: Path,
    stream: Any,
) -> Scenario:
    fields = {k: v for k, v in values.items() if k not in SCENARIO_KEYS}
    for key in ("image", "font"):  # files named in the spec are relative to the spec file
        if key in fields and isinstance(fields[key], str) and fields[key] not in FAMILIES:
            path = Path(fields[key]).expanduser()
            fields[key] = str(path if path.is_absolute() else base_dir / path)
    if fields or "description" in values:
        fields["description"] = str(values.get("description", ""))
    if base is not None:
        artifact = dataclasses.replace(base, **fields) if fields else base  # type: ignore[type-var]
    else:
        artifact = KINDS[kind](**fields)
    if not isinstance(stream, str):
        raise ScenarioSpecError(f"expected `stream` to be a name but got {stream!r}")
    return Scenario(
        name=label,
        artifact=artifact,
        stream=stream,
        jpeg_probe_quality=values.get("jpeg_probe_quality"),
        description=str(values.get("description", "")),
    )


def _is_sweep(key: str, value: Any) -> bool:
    if key in _NEVER_SWEPT or not isinstance(value, list):
        return False
    if key in _LIST_VALUED:  # one colour is [r, g, b] and one position [x, y]: numbers
        return all(isinstance(v, str | list) for v in value)
    return True


def _label(value: Any, index: int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format(value, "g")
    if isinstance(value, list) and all(isinstance(v, int) for v in value) and len(value) == 3:
        return "".join(f"{v:02x}" for v in value)  # a colour
    if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
        return "x".join(format(v, "g") for v in value)  # a position
    if isinstance(value, str) and _SIMPLE.match(value):
        return value
    return f"v{index}"

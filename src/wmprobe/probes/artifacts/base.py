"""What every artifact shares: the drawn result, colours, and the null artifact (nothing drawn)."""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageColor

from wmprobe.errors import ScenarioSpecError

BBox = tuple[int, int, int, int]
"""A box ``(left, top, right, bottom)`` in pixels, right and bottom exclusive."""

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Drawn:
    """An image with an artifact drawn on it, what was drawn, and the box of its ink."""

    image: Image.Image
    text: str
    bbox: BBox | None


class Artifact(ABC):
    """Something drawn on a frame with a per-image random stream; subclasses are frozen dataclasses.

    ``kind`` names the artifact in spec files; :meth:`to_dict` is its whole specification as plain
    JSON-able values (the spec-file keys), and :meth:`content` adds the identity of any files it
    reads, so that a hash of both changes whenever the drawn pixels may change.
    """

    kind: ClassVar[str]
    #: Every artifact class by its ``kind`` (filled as the classes are defined).
    kinds: ClassVar[dict[str, type[Artifact]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            Artifact.kinds[cls.kind] = cls

    @abstractmethod
    def draw(self, image: Image.Image, rng: np.random.Generator) -> Drawn:
        """Draw the artifact on a copy of ``image``; all randomness comes from ``rng``."""

    @abstractmethod
    def describe(self) -> str:
        """A one-line human description."""

    def to_dict(self) -> dict[str, Any]:
        """The specification as JSON-able values, ``kind`` first."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.compare:
                out[f.name] = _plain(getattr(self, f.name))
        return out

    def to_spec(self) -> dict[str, Any]:
        """Everything :meth:`from_spec` needs to rebuild this artifact exactly: :meth:`to_dict`
        with files by their full path and the description (which :meth:`to_dict` leaves out)."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = value.to_spec() if isinstance(value, Artifact) else _plain(value)
        return out

    @staticmethod
    def from_spec(spec: dict[str, Any]) -> Artifact:
        """The artifact that :meth:`to_spec` wrote (same ``to_dict``, same pixels).

        Example:
            >>> Artifact.from_spec(NullArtifact().to_spec()) == NullArtifact()
            True
        """
        if not isinstance(spec, dict) or spec.get("kind") not in Artifact.kinds:
            known = ", ".join(sorted(Artifact.kinds))
            raise ScenarioSpecError(
                f"Expected an artifact spec with `kind` one of {known} but got {spec!r}"
            )
        cls = Artifact.kinds[spec["kind"]]
        values = {
            key: Artifact.from_spec(value) if isinstance(value, dict) and "kind" in value else value
            for key, value in spec.items()
            if key != "kind"
        }
        try:
            return cls(**values)
        except TypeError as exc:
            raise ScenarioSpecError(f"A {cls.kind} artifact spec does not fit: {exc}") from exc

    def content(self) -> dict[str, str]:
        """Digests of the files the artifact reads (fonts given by path, overlay images)."""
        return {}

    def check_ready(self) -> None:
        """Raise a named error now if drawing would fail for a missing font, file or package."""
        self.content()

    def check_fits(self, frame: tuple[int, int]) -> None:
        """Raise a named error now if the artifact can never be drawn on a ``frame`` (w, h) image.

        Called before any image is read (values that validate one by one, such as a 100000 px
        font, must not fail only while drawing). Only what fails on every image is refused.
        The base class draws nothing of fixed size, so it has nothing to refuse.
        """
        return None

    def fill(self) -> tuple[RGB, float]:
        """The colour and opacity a placebo box uses in place of this artifact."""
        raise ScenarioSpecError(f"A {self.kind} artifact has no colour for a placebo box.")


@dataclass(frozen=True)
class NullArtifact(Artifact):
    """Nothing drawn: the probe is the clean frame, through the identical pipeline.

    Example:
        >>> frame = Image.new("RGB", (8, 8), (1, 2, 3))
        >>> NullArtifact().draw(frame, np.random.default_rng(0)).image.getpixel((0, 0))
        (1, 2, 3)
    """

    kind: ClassVar[str] = "none"

    def draw(self, image: Image.Image, rng: np.random.Generator) -> Drawn:
        return Drawn(image=image.convert("RGB").copy(), text="", bbox=None)

    def describe(self) -> str:
        return "nothing drawn (the empirical null)"


def parse_color(value: object, name: str = "color") -> RGB:
    """An RGB triple from ``[r, g, b]``, ``"#rrggbb"`` or a CSS colour name.

    Example:
        >>> parse_color("white")
        (255, 255, 255)
    """
    if isinstance(value, str):
        try:
            rgb = ImageColor.getrgb(value)
        except ValueError:
            raise ScenarioSpecError(
                f"Expected argument `{name}` to be [r, g, b], '#rrggbb' or a colour name "
                f"but got {value!r}"
            ) from None
        return (int(rgb[0]), int(rgb[1]), int(rgb[2]))
    if (
        isinstance(value, Sequence)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise ScenarioSpecError(
        f"Expected argument `{name}` to be [r, g, b] with integers 0-255, '#rrggbb' or a colour "
        f"name but got {value!r}"
    )


def check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    """Raise :class:`ScenarioSpecError` unless ``low <= value (<= high)``, in the house wording."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioSpecError(f"Expected argument `{name}` to be a number but got {value!r}")
    if not math.isfinite(value):
        raise ScenarioSpecError(f"Expected argument `{name}` to be a finite number but got {value}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ScenarioSpecError(f"Expected argument `{name}` to be {bound} but got {value}")


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Artifact):
        return value.to_dict()
    return value

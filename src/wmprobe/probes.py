"""Probe sets: each baseline image and the same image with an artifact drawn, seeded per image."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .artifacts import Drawn, TextArtifact, get_artifact


def probe_rng(seed: int, image_id: str, scenario: str) -> np.random.Generator:
    """The random stream of one probe image, from (seed, image id, scenario) alone.

    Any one probe image can be drawn again alone, in any order and in any process.
    """
    digest = hashlib.sha256(f"{image_id}\x00{scenario}".encode()).digest()
    words = np.frombuffer(digest[:16], dtype=np.uint32).tolist()
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


@dataclass(frozen=True)
class Scenario:
    """A named artifact: what is drawn on every image of one probe set."""

    name: str
    artifact: TextArtifact

    @classmethod
    def preset(cls, name: str) -> Scenario:
        """The named preset (``chinese``, ``latin``, ``hindi``, ``numerals``)."""
        return cls(name=name, artifact=get_artifact(name))

    def spec_hash(self) -> str:
        """A stable hex digest (sha256) of the scenario: its name and artifact; caches key on it."""
        return hashlib.sha256(f"{self.name}\x00{self.artifact!r}".encode()).hexdigest()

    def draw(self, frame: Image.Image, *, seed: int, image_id: str) -> Drawn:
        """The probe image of ``frame``: reproducible from (seed, image id, scenario name)."""
        return self.artifact.draw(frame, probe_rng(seed, image_id, self.name))

"""Mark detectors: what a scan scores each image with, saved as one ``weights_only`` file.

Three kinds read one layer of a backbone (see :mod:`wmprobe.scanning.backbone`):

* ``map``: a small per-location head (3x3 conv, ReLU, 1x1 conv) on a block's feature map at a
  higher input size, trained on synthetic marks with the drawn pixels as per-location targets.
  The image's score is the largest location logit; the location says which region scored, and a
  second set of outputs says which mark family it looks like.
* ``linear``: logistic regression on the pooled features (the paper-style linear probe).
* ``units``: training-free: the backbone's most watermark-sensitive pooled units from an audit
  (largest d), each standardised on clean images and signed so that a mark raises it, averaged.

Every detector carries the scores of held-out clean images, so a threshold for any stated
false-positive rate is read off them (:meth:`Detector.threshold`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wmprobe.errors import InvalidArgumentError, WmprobeError

KINDS = ("map", "linear", "units")
FORMAT = "wmprobe-detector/1"
PACKAGED = Path(__file__).with_name("detectors")
#: The detectors that ship with wmprobe, by name (``--detector NAME``).
PACKAGED_NAMES = ("default", "linear_probe", "units")
_ROWS = ("top", "middle", "bottom")
_COLS = ("left", "centre", "right")


class DetectorError(WmprobeError):
    """A detector file that cannot be used (missing, corrupt, or for another model)."""


class MapHead(nn.Module):
    """Per-location logits ``[B, 1 + F, G, G]``: channel 0 says "mark here", 1..F which family."""

    def __init__(self, channels: int, hidden: int, families: int):
        super().__init__()
        self.register_buffer("in_mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("in_scale", torch.ones(1, channels, 1, 1))
        self.context = nn.Conv2d(channels, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, 1 + families, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.in_mean) / self.in_scale
        return self.out(torch.relu(self.context(x)))


@dataclass
class Scores:
    """Per image: the score, the region that scored (name and cell box) and the likeliest family."""

    score: np.ndarray  # float64 [B]
    region: list[str]
    box: np.ndarray  # float32 [B, 4]: x0, y0, x1, y1 as fractions of the image
    family: list[str]


@dataclass
class Detector:
    """A trained (or training-free) mark detector; see the module docstring for the kinds."""

    kind: str
    model: str
    layer: str
    input_size: int
    state: dict[str, torch.Tensor]
    families: tuple[str, ...] = ()
    hidden: int = 0
    calibration: np.ndarray = field(default_factory=lambda: np.zeros(0))
    info: dict[str, Any] = field(default_factory=dict)
    _head: MapHead | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DetectorError(
                f"Expected a detector kind among {', '.join(KINDS)} but got {self.kind!r}"
            )

    # -- scoring -----------------------------------------------------------------------------
    def head(self) -> MapHead:
        if self._head is None:
            w = self.state["context.weight"]
            head = MapHead(int(w.shape[1]), int(w.shape[0]), len(self.families))
            head.load_state_dict(self.state)
            self._head = head.eval()
        return self._head

    @torch.inference_mode()
    def score(self, features: torch.Tensor) -> Scores:
        """Scores of a batch of the layer's activations (``[B, C, G, G]`` or ``[B, C]``)."""
        x = features.float().cpu()
        n = x.shape[0]
        if self.kind == "map":
            logits = self.head()(x)
            flat = logits[:, 0].flatten(1)
            best, where = flat.max(1)
            g = logits.shape[-1]
            rows, cols = (where // g).numpy(), (where % g).numpy()
            fam = logits[:, 1:].flatten(2)[torch.arange(n), :, where].argmax(1).numpy()
            box = np.stack([cols / g, rows / g, (cols + 1) / g, (rows + 1) / g], 1)
            region = [region_name(r, c, g) for r, c in zip(rows, cols, strict=True)]
            family = [self.families[int(f)] for f in fam]
            return Scores(best.double().numpy(), region, box.astype(np.float32), family)
        if x.ndim > 2:
            x = x.mean(dim=tuple(range(2, x.ndim)))
        z = (x.double() - self.state["mean"].double()) / self.state["scale"].double()
        if self.kind == "linear":
            s = z @ self.state["weight"].double() + self.state["bias"].double()
        else:
            s = (z[:, self.state["units"].long()] * self.state["sign"].double()).mean(1)
        whole = np.tile(np.array([0, 0, 1, 1], np.float32), (n, 1))
        return Scores(s.numpy(), ["whole"] * n, whole, [""] * n)

    def threshold(self, fpr: float) -> float:
        """The score above which at most ``fpr`` of the held-out clean images lie."""
        if isinstance(fpr, bool) or not isinstance(fpr, int | float) or not 0 < fpr < 1:
            raise InvalidArgumentError(f"Expected argument `fpr` to be in (0, 1) but got {fpr!r}")
        clean = np.sort(np.asarray(self.calibration, np.float64))
        if clean.size == 0:
            raise DetectorError("This detector has no calibration scores; train it again.")
        if fpr * clean.size < 1:
            raise InvalidArgumentError(
                f"Expected argument `fpr` to be at least 1/{clean.size} (the detector was "
                f"calibrated on {clean.size} clean images) but got {fpr}"
            )
        return float(clean[math.ceil((1.0 - fpr) * clean.size) - 1])

    def grid_size(self) -> int | None:
        """Side of the feature grid of a map detector (None for pooled kinds)."""
        return None if self.kind != "map" else int(self.info.get("grid", 0)) or None

    # -- saving ------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": self.kind,
            "model": self.model,
            "layer": self.layer,
            "input_size": self.input_size,
            "families": list(self.families),
            "hidden": self.hidden,
            "info": self.info,
        }

    def digest(self) -> str:
        """A sha256 of the config, the weights and the calibration (keys the scan cache)."""
        h = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode())
        for name in sorted(self.state):
            h.update(name.encode())
            h.update(self.state[name].detach().cpu().contiguous().numpy().tobytes())
        h.update(np.asarray(self.calibration, np.float64).tobytes())
        return h.hexdigest()

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (loadable with ``torch.load(path, weights_only=True)``) and its JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "config": json.dumps(self.config(), sort_keys=True),
            "state": {k: v.detach().cpu().contiguous() for k, v in self.state.items()},
            "calibration": torch.from_numpy(np.asarray(self.calibration, np.float64)),
        }
        torch.save(payload, path)
        path.with_suffix(".json").write_text(json.dumps(self.config(), indent=2) + "\n")
        return path


def region_name(row: int, col: int, grid: int) -> str:
    """The third of the image a cell lies in: ``top-left`` ... ``bottom-right``."""
    r = _ROWS[min(2, row * 3 // grid)]
    c = _COLS[min(2, col * 3 // grid)]
    return f"{r}-{c}"


def load_detector(source: str | Path | None = None) -> Detector:
    """A detector from a file saved by :meth:`Detector.save`, or a packaged one by name.

    ``None`` is the packaged ``default`` (a map head on EfficientNet-Lite0); other packaged names:
    ``linear_probe`` and ``units`` (the baselines).
    """
    name = "default" if source is None else str(source)
    if name in PACKAGED_NAMES:
        path = PACKAGED / f"{name}.pt"
        if not path.is_file():
            raise DetectorError(
                f"The packaged detector {name!r} is not installed ({path}); train one with "
                f"`wmprobe detector train --images DIR --out FILE.pt`."
            )
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise DetectorError(
                f"Detector file {name!r} does not exist; give a file saved by `wmprobe detector "
                f"train` or one of {', '.join(PACKAGED_NAMES)}."
            )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        config = json.loads(payload["config"])
    except Exception as exc:  # noqa: BLE001 - any failure to read is the same user error
        raise DetectorError(f"Cannot read detector {str(path)!r}: {exc}") from exc
    if config.get("format") != FORMAT:
        raise DetectorError(f"{str(path)!r} is not a wmprobe detector ({FORMAT}).")
    return Detector(
        kind=config["kind"],
        model=config["model"],
        layer=config["layer"],
        input_size=int(config["input_size"]),
        state=dict(payload["state"]),
        families=tuple(config["families"]),
        hidden=int(config["hidden"]),
        calibration=payload["calibration"].numpy(),
        info=config["info"],
    )

"""An audit's baseline checked by the scan: which "clean" images already carry a mark.

A baseline that carries marks dilutes every AUC of the audit, so ``wmprobe audit
--check-baseline`` scans the audit's own images first and lists those the scan flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wmprobe.scanning.run import DEFAULT_FPR, scan

if TYPE_CHECKING:
    from wmprobe.extraction.engines.base import Engine


@dataclass
class BaselineCheck:
    """The flagged baseline images (relative paths, by score) and the scan's setting."""

    flagged: list[str]
    scored: int
    fpr: float
    threshold: float
    detector: str
    out: Path

    def lines(self, shown: int = 30) -> list[str]:
        """The summary's lines."""
        head = (
            f"baseline check ({self.detector} detector, threshold at a false-positive rate of "
            f"{self.fpr:g}): {len(self.flagged)} of {self.scored} baseline images flagged as "
            f"carrying a mark (scan in {self.out}):"
        )
        rows = [f"  {p}" for p in self.flagged[:shown]]
        if len(self.flagged) > shown:
            rows.append(f"  ... and {len(self.flagged) - shown} more (flagged.txt)")
        return [head, *rows]


def check_baseline(
    images: str | Path,
    out: str | Path,
    *,
    paths: list[str] | None = None,
    detector: str | Path | None = None,
    fpr: float = DEFAULT_FPR,
    device: str = "auto",
    engine: Engine | None = None,
) -> BaselineCheck:
    """Scan the baseline images (``paths``, default: every image under ``images``) into ``out``,
    on ``engine`` (None: here; see :func:`~wmprobe.scanning.run.scan`)."""
    result = scan(
        images, out, detector=detector, paths=paths, fpr=fpr, device=device, top=48, engine=engine
    )
    root = str(Path(images).expanduser()).rstrip("/") + "/"
    flagged = [p[len(root) :] if p.startswith(root) else p for p in result.flagged["path"]]
    return BaselineCheck(
        flagged, len(result.table), fpr, result.threshold, result.detector.kind, Path(out)
    )

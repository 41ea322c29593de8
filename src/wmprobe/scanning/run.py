"""``wmprobe.scan``: rank every image of a folder by how likely it carries an overlaid mark.

The folder is streamed (:func:`wmprobe.scanning.files.iter_images`) in chunks of ``CHUNK``
images; each chunk's scores are written to the scan's cache as soon as they are known, so a killed
scan resumes where it stopped. A chunk is computed from its own images only, with the same batches,
so a resumed scan gives the same scores as one that was never stopped. With a remote engine
(``engine=RayEngine(...)``, ``scan --engine ray``) the chunks the cache lacks are scored on its
workers instead (:mod:`wmprobe.scanning.remote`), with the same chunks, batches and cache. The
threshold comes from the detector's held-out clean images at the stated false-positive rate.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from wmprobe.errors import BadImageError, ImageFolderError, InvalidArgumentError
from wmprobe.scanning.backbone import FeatureTap
from wmprobe.scanning.detector import Detector, load_detector
from wmprobe.scanning.files import iter_images, read_square

if TYPE_CHECKING:
    from wmprobe.extraction.engines.base import Engine

CHUNK = 256
DEFAULT_FPR = 0.01


@dataclass
class ScanResult:
    """A finished scan: the table (one row per readable image, by rank) and where it was written."""

    table: pd.DataFrame
    out: Path
    threshold: float
    fpr: float
    skipped: pd.DataFrame
    detector: Detector
    evaluation: dict | None = None

    @property
    def flagged(self) -> pd.DataFrame:
        return self.table[self.table["flagged"]]


def _chunks(paths: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(paths)
    while batch := list(islice(it, size)):
        yield batch


def _read(path: str, size: int) -> np.ndarray | str:
    try:
        return read_square(path, size)
    except BadImageError as exc:
        return str(exc)


def score_paths(
    paths: list[str],
    detector: Detector,
    tap: FeatureTap,
    *,
    batch_size: int = 16,
    pool: ThreadPoolExecutor | None = None,
) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """Scores of ``paths`` in batches of ``batch_size``; the next batch is read while one runs."""
    size = detector.input_size
    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    read = (lambda b: [_read(p, size) for p in b]) if pool is None else None
    rows: dict[str, list] = {"path": [], "score": [], "box": [], "region": [], "family": []}
    bad: list[tuple[str, str]] = []
    pending = pool.submit(lambda b=batches[0]: [_read(p, size) for p in b]) if pool else None
    for k, batch in enumerate(batches):
        frames = pending.result() if pending is not None else read(batch)
        if pool is not None and k + 1 < len(batches):
            nxt = batches[k + 1]
            pending = pool.submit(lambda b=nxt: [_read(p, size) for p in b])
        good = [(p, f) for p, f in zip(batch, frames, strict=True) if not isinstance(f, str)]
        bad += [(p, f) for p, f in zip(batch, frames, strict=True) if isinstance(f, str)]
        if not good:
            continue
        scores = detector.score(tap(np.stack([f for _, f in good])))
        rows["path"] += [p for p, _ in good]
        rows["score"].append(scores.score)
        rows["box"].append(scores.box)
        rows["region"] += scores.region
        rows["family"] += scores.family
    out = {
        "path": np.array(rows["path"], dtype=str),
        "score": np.concatenate(rows["score"]) if rows["score"] else np.zeros(0),
        "box": np.concatenate(rows["box"]) if rows["box"] else np.zeros((0, 4), np.float32),
        "region": np.array(rows["region"], dtype=str),
        "family": np.array(rows["family"], dtype=str),
    }
    return out, bad


def scan(
    images: str | Path,
    out: str | Path,
    *,
    detector: str | Path | Detector | None = None,
    top: int = 48,
    fpr: float = DEFAULT_FPR,
    batch_size: int = 16,
    device: str = "auto",
    labels: str | Path | None = None,
    limit: int | None = None,
    paths: Iterable[str] | None = None,
    progress: bool = False,
    engine: Engine | None = None,
) -> ScanResult:
    """Rank the images under ``images`` and write the scan folder ``out``.

    Writes ``scores.parquet`` and ``scores.csv`` (image_id, path, score, rank, flagged, region,
    family, box), ``flagged.txt``, ``skipped.csv``, ``contact_sheet.png`` (the top ``top``),
    ``index.html`` and ``scan.json``; with ``labels`` also ``evaluation.json``. ``paths`` scans
    those files (under ``images``) instead of the whole folder. ``engine``: where the images are
    scored (:func:`~wmprobe.extraction.engines.get_engine`); None or a local engine: here, the
    folder streamed (with the local engine's ``threads``); a remote one (Ray): the paths are
    listed first and the chunks the cache lacks are scored on its workers, which read the images
    and the detector file at the same paths.

    Example:
        >>> result = wmprobe.scan("photos/", "SCAN")  # doctest: +SKIP
        >>> result.flagged.path.tolist()[:3]  # doctest: +SKIP
    """
    from wmprobe.extraction._cpu import inference_scope
    from wmprobe.extraction.engines.local import LocalEngine
    from wmprobe.scanning.outputs import write_outputs

    det = detector if isinstance(detector, Detector) else load_detector(detector)
    threshold = det.threshold(fpr)
    for name, value, low in (("top", top, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidArgumentError(
                f"Expected argument `{name}` to be an integer >= {low} but got {value!r}"
            )
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise InvalidArgumentError(f"Expected argument `limit` to be >= 1 but got {limit!r}")
    root = Path(images).expanduser()
    out = Path(out)
    cache = out / "cache" / det.digest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    label_table = None
    if labels is not None:  # bad label files fail before any work
        from wmprobe.scanning.evaluation import read_labels

        label_table = read_labels(labels)
    tap = FeatureTap(det.model, det.layer, device=device)
    started = time.perf_counter()
    parts, bad_rows, computed = [], [], 0
    stream = iter_images(root) if paths is None else (str(p) for p in paths)
    if limit is not None:
        stream = islice(stream, limit)
    if engine is not None and engine.remote:
        from wmprobe.scanning.remote import scan_job, score_on_engine

        job = scan_job(det, detector, tap, batch_size)
        parts, bad_rows, computed = score_on_engine(
            engine, stream, cache, job, chunk_size=CHUNK, progress=progress
        )
    else:
        threads = engine.resources.cpus if isinstance(engine, LocalEngine) else None
        with ThreadPoolExecutor(1) as pool, inference_scope(threads) as scope:
            for index, chunk in enumerate(_chunks(stream, CHUNK)):
                data, bad = _cached_chunk(cache, index, chunk)
                if data is None:
                    data, bad = score_paths(chunk, det, tap, batch_size=batch_size, pool=pool)
                    _save_chunk(cache, index, chunk, data, bad)
                    computed += len(chunk)
                    scope.step()
                parts.append(data)
                bad_rows += bad
                if progress:
                    print(f"  scanned {index * CHUNK + len(chunk)} images", flush=True)
    if not parts:
        raise ImageFolderError(f"Image folder {str(root)!r} holds no image files.")
    elapsed = time.perf_counter() - started
    table = _table(parts, root, threshold)
    skipped = pd.DataFrame(bad_rows, columns=["path", "reason"])
    result = ScanResult(table, out, threshold, fpr, skipped, det)
    if label_table is not None:
        from wmprobe.scanning.evaluation import evaluate

        result.evaluation = evaluate(table, label_table, root=root, threshold=threshold, top=top)
    meta = {
        "images": str(root),
        "detector": det.config(),
        "detector_sha256": det.digest(),
        "fpr": fpr,
        "threshold": threshold,
        "calibration_images": int(len(det.calibration)),
        "scored": int(len(table)),
        "flagged": int(table["flagged"].sum()),
        "skipped": int(len(skipped)),
        "computed_now": computed,
        "seconds": round(elapsed, 3),
    }
    write_outputs(result, meta, top=top)
    return result


def _chunk_file(cache: Path, index: int) -> Path:
    return cache / f"chunk-{index:07d}.npz"


def _cached_chunk(cache: Path, index: int, chunk: list[str]):
    file = _chunk_file(cache, index)
    if not file.exists():
        return None, []
    with np.load(file, allow_pickle=False) as z:
        if z["all_paths"].tolist() != chunk:  # the folder changed: compute this chunk again
            return None, []
        data = {k: z[k] for k in ("path", "score", "box", "region", "family")}
        bad = list(zip(z["bad_path"].tolist(), z["bad_reason"].tolist(), strict=True))
    return data, bad


def _save_chunk(cache: Path, index: int, chunk, data, bad) -> None:
    file = _chunk_file(cache, index)
    tmp = file.with_name(f"{file.stem}.tmp{os.getpid()}.npz")
    np.savez(
        tmp,
        all_paths=np.array(chunk, dtype=str),
        bad_path=np.array([b[0] for b in bad], dtype=str),
        bad_reason=np.array([b[1] for b in bad], dtype=str),
        **data,
    )
    os.replace(tmp, file)


def _table(parts: list[dict[str, np.ndarray]], root: Path, threshold: float) -> pd.DataFrame:
    paths = np.concatenate([p["path"] for p in parts])
    box = np.concatenate([p["box"] for p in parts]).reshape(-1, 4)
    prefix = len(os.fspath(root).rstrip(os.sep)) + 1
    table = pd.DataFrame(
        {
            "image_id": [os.path.splitext(p[prefix:])[0] for p in paths],
            "path": paths,
            "score": np.concatenate([p["score"] for p in parts]).astype(np.float64),
            "region": np.concatenate([p["region"] for p in parts]),
            "family": np.concatenate([p["family"] for p in parts]),
            "box_x0": box[:, 0], "box_y0": box[:, 1], "box_x1": box[:, 2], "box_y1": box[:, 3],
        }
    )  # fmt: skip
    table = table.sort_values(["score", "path"], ascending=[False, True], kind="stable")
    table.insert(3, "rank", np.arange(1, len(table) + 1))
    table.insert(4, "flagged", table["score"].to_numpy() > threshold)
    return table.reset_index(drop=True)


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")

"""A small on-disk cache of feature-layer activations, keyed by model, weights, images and probes.

One folder per entry, ``<cache>/<model>/<kind>-<digest>/``, holding ``manifest.json`` (the key in
full, how long the pass took) and ``features.npz``. The digest is a hash of the key, so a change of
weights, of any image file (path, size or modification time), of the scenarios, of the probe seed
or of the device type makes a new entry. This is a stop-gap: the project's general activation cache
will replace it; everything goes through :func:`cached_features`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..activations import Activations, extract
from ..errors import ImageFolderError
from ..images import ImageRecord
from ..models import LoadedModel
from ..probes import Scenario

FORMAT = "wmprobe-features/1"


def default_cache_dir() -> Path:
    """``$WMPROBE_CACHE`` when set, else ``~/.cache/wmprobe``."""
    env = os.environ.get("WMPROBE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wmprobe"


def weights_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 of every tensor of the module's state dict (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def records_fingerprint(records: Sequence[ImageRecord]) -> str:
    """SHA-256 of the images in order: id, label, file size and modification time of each.

    A file that cannot be stat'ed (a dangling link, no permission) enters as the kind of its
    error: extraction skips it and lists it, and fixing it changes the key.
    """
    h = hashlib.sha256()
    for r in records:
        try:
            st = r.path.stat()
            state = f"{st.st_size}\x00{st.st_mtime_ns}"
        except OSError as exc:
            state = f"unreadable:{type(exc).__name__}"
        h.update(f"{r.image_id}\x00{r.label}\x00{state}\n".encode())
    return h.hexdigest()


def cache_key(
    model: LoadedModel, records: Sequence[ImageRecord], scenarios: Sequence[Scenario], seed: int
) -> dict:
    """Everything the cached features depend on."""
    return {
        "format": FORMAT,
        "model": model.name,
        "pretrained": model.pretrained,
        "weights_sha256": weights_fingerprint(model.module),
        "input_size": model.spec.input_size,
        "images_sha256": records_fingerprint(records),
        "n_images": len(records),
        "scenarios": [[s.name, repr(s.artifact)] for s in scenarios],
        "probe_seed": int(seed),
        "device_type": model.device.type,
        "layer": "features",
    }


def cached_features(
    model: LoadedModel,
    records: Sequence[ImageRecord],
    scenarios: Sequence[Scenario],
    *,
    kind: str,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    batch_size: int = 16,
    num_workers: int | None = None,
    progress: bool = True,
) -> tuple[Activations, dict]:
    """Feature-layer activations of ``records`` (clean and each scenario), from the cache or a pass.

    Returns the activations and the entry's manifest (its key, ``seconds`` of the pass that made it,
    and ``cached``: whether this call read it from disk).
    """
    key = cache_key(model, records, scenarios, seed)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    folder = Path(cache_dir or default_cache_dir()).expanduser() / model.name / f"{kind}-{digest}"
    manifest_path, data_path = folder / "manifest.json", folder / "features.npz"
    if manifest_path.is_file() and data_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") == key:
            acts = _load(data_path, model.name, manifest.get("images_skipped", {}))
            return acts, {**manifest, "cached": True, "path": str(folder)}
    start = time.perf_counter()
    acts = extract(
        model,
        records,
        scenarios,
        seed=seed,
        layers=("features",),
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    if not acts.image_ids:
        raise ImageFolderError(
            f"None of the {len(records)} images could be read; first reasons: "
            + "; ".join(list(acts.skipped.values())[:3])
        )
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "features.tmp.npz"
    np.savez(
        tmp,
        features=acts.values["features"],
        image_ids=np.array(acts.image_ids, dtype=np.str_),
        labels=acts.labels,
        variants=np.array(acts.variants, dtype=np.str_),
        **{f"texts_{name}": np.array(t, dtype=np.str_) for name, t in acts.texts.items()},
    )
    tmp.replace(data_path)
    manifest = {
        "key": key,
        "seconds": round(seconds, 3),
        "images_used": len(acts.image_ids),
        "images_skipped": acts.skipped,
        "wmprobe_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    tmp_manifest = folder / "manifest.tmp.json"
    tmp_manifest.write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    tmp_manifest.replace(manifest_path)
    return acts, {**manifest, "cached": False, "path": str(folder)}


def _load(path: Path, model_name: str, skipped: dict[str, str]) -> Activations:
    with np.load(path, allow_pickle=False) as z:
        variants = tuple(str(v) for v in z["variants"])
        texts = {v: [str(t) for t in z[f"texts_{v}"]] for v in variants[1:] if f"texts_{v}" in z}
        return Activations(
            model=model_name,
            image_ids=[str(i) for i in z["image_ids"]],
            labels=z["labels"].astype(np.int64),
            variants=variants,
            values={"features": z["features"]},
            texts=texts,
            skipped=dict(skipped),
        )

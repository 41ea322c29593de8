"""The activation cache: resume after SIGKILL, keys, sharing of the clean entry, locks."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import wmprobe.extraction.cache as cache_module
from tests import _counting
from tests.conftest import IMAGENET_SAMPLES, REPO, needs_imagenet_samples
from wmprobe.auditing.tables import audit_table
from wmprobe.errors import ImageChangedError
from wmprobe.extraction.activations import extract
from wmprobe.extraction.cache import ActivationCache, CacheError, EntryKey
from wmprobe.models import load_model
from wmprobe.probes.images import ImageRecord, scan_folder
from wmprobe.probes.scenario import Scenario

LAYERS = ["logits", "features"]


def _extract(records, cache, *, model="counting_net", scenario=None, **kw):
    _counting.FRAMES["n"] = 0
    kw = {"layers": ["logits"], "batch_size": 2, "num_workers": 0, "progress": False, **kw}
    acts = extract(
        load_model(model, device="cpu"),
        records,
        [scenario or Scenario.preset("latin")],
        cache=cache,
        **kw,
    )
    return _counting.FRAMES["n"], acts


def _child_script(image_dir: Path, cache: Path) -> str:
    return f"""
import sys
sys.path[:0] = [{str(REPO / "src")!r}, {str(REPO)!r}]
import tests._counting
from wmprobe.extraction.activations import extract
from wmprobe.extraction.cache import ActivationCache
from wmprobe.probes.images import scan_folder
from wmprobe.models import load_model
from wmprobe.probes.scenario import Scenario
extract(load_model("counting_net", device="cpu"), scan_folder({str(image_dir)!r}).records,
        [Scenario.preset("latin")], layers={LAYERS!r}, batch_size=2, num_workers=0,
        progress=False, cache=ActivationCache({str(cache)!r}, chunk_size=2))
"""


def _markers(cache: Path) -> list[Path]:
    return list(cache.glob("activations/counting_net/*/*/*/chunks/*.json"))


def _start_slow_child(image_dir: Path, cache: Path, delay: str) -> subprocess.Popen:
    env = {**os.environ, "WMPROBE_TEST_DELAY": delay}
    return subprocess.Popen([sys.executable, "-c", _child_script(image_dir, cache)], env=env)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the child run ended (status {proc.returncode}) before it was expected")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the child run wrote no chunks in time")
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_during_extraction_resumes_to_identical_tables(image_dir, tmp_path):
    cache = tmp_path / "cache"
    proc = _start_slow_child(image_dir, cache, delay="0.4")
    _wait_for(lambda: len(_markers(cache)) >= 5, proc)  # 4 entries: at least one whole chunk
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    written = len(_markers(cache))
    assert 5 <= written < 6 * 4  # 12 images in chunks of 2, 4 entries: not all of it

    records = scan_folder(image_dir).records
    frames, resumed = _extract(records, ActivationCache(cache, chunk_size=2), layers=LAYERS)
    assert 0 < frames < 2 * len(records)  # only the missing chunks were computed
    frames_again, _ = _extract(records, ActivationCache(cache, chunk_size=2), layers=LAYERS)
    assert frames_again == 0

    _, straight = _extract(
        records, ActivationCache(tmp_path / "fresh", chunk_size=2), layers=LAYERS
    )
    names = tuple(str(i) for i in range(10))
    pd.testing.assert_frame_equal(audit_table(resumed, names), audit_table(straight, names))
    for layer in LAYERS:
        for variant in resumed.variants:
            assert np.array_equal(resumed.get(layer, variant), straight.get(layer, variant))
    assert resumed.texts == straight.texts and resumed.image_ids == straight.image_ids


@pytest.mark.slow
def test_a_second_run_waits_for_the_first_and_reuses_its_work(image_dir, tmp_path, capsys):
    cache = tmp_path / "cache"
    proc = _start_slow_child(image_dir, cache, delay="0.1")
    _wait_for(lambda: len(_markers(cache)) >= 1, proc)
    records = scan_folder(image_dir).records
    frames, acts = _extract(
        records, ActivationCache(cache, chunk_size=2), layers=LAYERS, progress=True
    )
    assert proc.wait(timeout=60) == 0
    assert frames == 0  # everything came from the first run
    assert "waiting for another run" in capsys.readouterr().err
    _, fresh = _extract(records, None, layers=LAYERS)
    np.testing.assert_allclose(acts.get("features", "latin"), fresh.get("features", "latin"))


@pytest.fixture
def records(tmp_path, image_dir) -> list[ImageRecord]:
    folder = tmp_path / "images"
    folder.mkdir()
    for p in sorted(image_dir.iterdir())[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    return scan_folder(folder).records


@pytest.fixture
def restore_counting_net():
    yield
    _counting.register("counting_net")


def _change_bytes(records):
    path = records[0].path
    pixels = np.asarray(Image.open(path)).copy()
    pixels[0, 0] ^= 0xFF
    Image.fromarray(pixels).save(path)
    return {}


CHANGES = {  # key part: (change -> extract kwargs, frames expected: "all" or "probe")
    "image ids": (
        lambda r: {"records": [dataclasses.replace(x, image_id=x.image_id + "_b") for x in r]},
        "all",
    ),
    "image bytes": (_change_bytes, "all"),
    "artifact spec": (
        lambda r: {
            "scenario": Scenario(
                "latin", dataclasses.replace(Scenario.preset("latin").artifact, size=24)
            )
        },
        "probe",
    ),
    "seed": (lambda r: {"seed": 1}, "probe"),
    "model name": (lambda r: {"model": _counting.register("counting_net_b")}, "all"),
    "weights": (lambda r: {"model": _counting.register("counting_net", seed=1)}, "all"),
    "layer": (lambda r: {"layers": ["features"]}, "all"),
    "reduction": (lambda r: {"reduction": "max"}, "all"),
    "input size": (lambda r: {"model": _counting.register("counting_net", input_size=32)}, "all"),
    "mean": (lambda r: {"model": _counting.register("counting_net", mean=(0.5, 0.5, 0.5))}, "all"),
    "std": (lambda r: {"model": _counting.register("counting_net", std=(0.5, 0.5, 0.5))}, "all"),
    "dtype": (lambda r: {"dtype": "float16"}, "all"),
}


@pytest.mark.parametrize("part", list(CHANGES))
@pytest.mark.slow
def test_an_entry_is_not_reused_when_its_key_changes(part, records, tmp_path, restore_counting_net):
    cache = ActivationCache(tmp_path / "cache")
    n = len(records)
    assert _extract(records, cache)[0] == 2 * n  # clean + latin
    assert _extract(records, cache)[0] == 0  # the same key: all from the cache
    change, expected = CHANGES[part]
    kwargs = change(records)
    frames, acts = _extract(kwargs.pop("records", records), cache, **kwargs)
    assert frames == (2 * n if expected == "all" else n), part
    assert len(acts.image_ids) == n


def test_every_key_field_changes_the_digest_and_folder():
    base = EntryKey(
        model="m",
        weights="w",
        code="c",
        device="cpu",
        autocast=None,
        variant="latin",
        artifact="a",
        seed=0,
        layer="logits",
        reduction="mean",
        frame_size=224,
        input_size=224,
        mean=(0.1, 0.2, 0.3),
        std=(0.4, 0.5, 0.6),
        jpeg_quality=None,
        images="i",
        n_images=3,
        dtype="float32",
    )
    other = {str: "x", int: 7, tuple: (0.9, 0.9, 0.9)}
    for f in dataclasses.fields(EntryKey):
        value = getattr(base, f.name)
        changed = dataclasses.replace(base, **{f.name: 95 if value is None else other[type(value)]})
        assert changed.digest() != base.digest(), f.name
        assert changed.folder() != base.folder(), f.name


def _entry_key(**changes) -> EntryKey:
    fields = dict(
        model="m", weights="w", code="c", device="cpu", autocast=None, variant="latin",
        artifact="a", seed=0, layer="logits", reduction="mean", frame_size=224, input_size=224,
        mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), jpeg_quality=None, images="i", n_images=7,
        dtype="float32",
    )  # fmt: skip
    return EntryKey(**{**fields, **changes})


def test_chunks_written_through_renewed_maps_read_back_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "REMAP_WRITES", 2)  # a fresh map every second chunk
    entry = ActivationCache(tmp_path / "cache", chunk_size=2).entry(_entry_key())
    entry.begin()
    values = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    for index in (3, 0, 2, 1):  # in any order; the last chunk is short
        rows = values[2 * index : 2 * index + 2]
        entry.write_chunk(index, rows, np.ones(len(rows), bool), {}, None)
    entry.finish()
    assert entry.usable() and entry.problem() is None
    np.testing.assert_array_equal(entry.open_values(), values)
    with pytest.raises(CacheError, match="gave 4 units now and 5 before"):
        other = ActivationCache(tmp_path / "cache", chunk_size=2).entry(_entry_key(seed=1))
        other.begin()
        other.write_chunk(0, values[:2], np.ones(2, bool), {}, None)
        other.write_chunk(1, values[2:4, :4], np.ones(2, bool), {}, None)


def with_wrong_sha1(cache: ActivationCache, name: str, sha1: str = "0" * 40) -> ActivationCache:
    """``cache``, remembering ``sha1`` for the file called ``name`` whatever its bytes (as when
    the file changes after it was hashed, or a worker sees another file at its path)."""
    real = cache.file_hashes
    cache.file_hashes = lambda paths: [
        sha1 if Path(p).name == name else digest
        for p, digest in zip(paths, real(paths), strict=True)
    ]
    return cache


@pytest.mark.parametrize("num_workers", [0, 1])
def test_an_image_whose_bytes_are_not_the_hashed_ones_stops_the_run(
    image_dir, tmp_path, num_workers
):
    records = scan_folder(image_dir).records
    victim = records[5].path.name
    cache = with_wrong_sha1(ActivationCache(tmp_path / "cache", chunk_size=2), victim)
    with pytest.raises(ImageChangedError, match=f"{victim} is not the file that was hashed"):
        _extract(records, cache, num_workers=num_workers)
    _, acts = _extract(records, ActivationCache(tmp_path / "cache", chunk_size=2))
    assert not acts.skipped and len(acts.image_ids) == len(records)  # hashed anew: read as usual


def test_an_image_hashed_but_unreadable_when_decoded_stops_the_run(image_dir, tmp_path):
    records = scan_folder(image_dir).records[:4]
    gone = dataclasses.replace(records[2], path=tmp_path / "gone.png")  # deleted after hashing
    cache = ActivationCache(tmp_path / "cache", chunk_size=2)
    cache = with_wrong_sha1(cache, "gone.png", "ab" * 20)
    with pytest.raises(ImageChangedError, match="gone.png was read when it was hashed"):
        _extract([*records[:2], gone, records[3]], cache)


def test_clean_entry_is_shared_by_a_new_scenario(records, tmp_path):
    cache = ActivationCache(tmp_path / "cache")
    _extract(records, cache)
    _counting.FRAMES["n"] = 0
    acts = extract(
        load_model("counting_net", device="cpu"),
        records,
        [Scenario.preset("latin"), Scenario.preset("hindi")],
        layers=["logits"],
        batch_size=2,  # as _extract: the batch size is in the key
        num_workers=0,
        progress=False,
        cache=cache,
    )
    assert _counting.FRAMES["n"] == len(records)  # only the hindi probes ran
    assert acts.variants == ("clean", "latin", "hindi")
    folder = tmp_path / "cache" / "activations" / "counting_net"
    assert sorted(p.name for p in folder.iterdir()) == ["clean", "hindi", "latin"]
    manifest = next(folder.glob("clean/logits/*/manifest.json")).read_text()
    assert '"complete": true' in manifest and '"variant": "clean"' in manifest


def test_cached_values_skips_and_float16(tmp_path, image_dir):
    folder = tmp_path / "images"
    folder.mkdir()
    for p in sorted(image_dir.iterdir())[:5]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"not an image")
    records = scan_folder(folder).records
    _, memory = _extract(records, None, layers=LAYERS)
    cache = ActivationCache(tmp_path / "cache")
    _, first = _extract(records, cache, layers=LAYERS, dtype="float16")
    frames, second = _extract(records, cache, layers=LAYERS, dtype="float16")
    assert frames == 0
    for acts in (first, second):
        assert set(acts.skipped) == {"broken"} and len(acts.image_ids) == 5
        assert acts.get("features", "clean").dtype == np.float16
        np.testing.assert_allclose(
            acts.get("features", "latin"), memory.get("features", "latin"), rtol=2e-3, atol=2e-3
        )
        stacked = acts.values["logits"]
        assert stacked.shape == (5, 2, 10)
        assert np.array_equal(stacked[:, 1], acts.get("logits", "latin"))
        assert np.array_equal(
            acts.block("logits", "clean", 2, 5), acts.get("logits", "clean")[:, 2:5]
        )


def test_audit_uses_the_cache_and_cli_flags(image_dir, tmp_path):
    from click.testing import CliRunner

    from wmprobe.cli import main

    base = ["audit", "--images", str(image_dir), "--model", "counting_net", "--quiet"]
    base += ["--scenarios", "latin", "--workers", "0", "--limit", "4"]
    runner = CliRunner()
    first = runner.invoke(
        main, [*base, "--out", str(tmp_path / "a"), "--cache", str(tmp_path / "c")]
    )
    assert first.exit_code == 0, first.output
    assert (tmp_path / "c" / "activations" / "counting_net" / "clean").is_dir()
    _counting.FRAMES["n"] = 0
    again = runner.invoke(
        main, [*base, "--out", str(tmp_path / "b"), "--cache", str(tmp_path / "c")]
    )
    assert again.exit_code == 0 and _counting.FRAMES["n"] == 0
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a" / "units.parquet"),
        pd.read_parquet(tmp_path / "b" / "units.parquet"),
    )
    both = runner.invoke(main, [*base, "--out", str(tmp_path / "d"), "--no-cache", "--cache", "x"])
    assert both.exit_code != 0 and "contradict" in both.output
    none = runner.invoke(main, [*base, "--out", str(tmp_path / "e"), "--no-cache"])
    assert none.exit_code == 0 and _counting.FRAMES["n"] > 0


def test_several_models_write_one_folder_each(image_dir, tmp_path):
    from click.testing import CliRunner

    from wmprobe.cli import main

    argv = ["audit", "--images", str(image_dir), "--models", "counting_net,tiny_test_net"]
    argv += ["--quiet", "--scenarios", "latin", "--workers", "0", "--limit", "3"]
    argv += ["--out", str(tmp_path / "run")]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    for name in ("counting_net", "tiny_test_net"):
        table = pd.read_parquet(tmp_path / "run" / "models" / name / "units.parquet")
        assert set(table["model"]) == {name}


@needs_imagenet_samples()
@pytest.mark.slow
def test_efficientnet_lite0_blocks_from_the_cache_on_imagenet_samples(tmp_path):
    from wmprobe.auditing.run import audit

    kw = dict(
        model="efficientnet_lite0",
        scenarios=["chinese", "latin"],
        layers=["blocks", "features"],
        limit=12,
        progress=False,
        cache=tmp_path / "cache",
    )
    first = audit(IMAGENET_SAMPLES, **kw)
    layers = list(dict.fromkeys(first.table["layer"]))
    assert layers == [f"_blocks.{i}" for i in (0, 2, 4, 7, 10, 14, 15)] + ["features"]
    widths = first.table[first.table.scenario == "chinese"].groupby("layer", sort=False).size()
    assert list(widths) == [16, 24, 40, 80, 112, 192, 320, 1280]
    start = time.perf_counter()
    again = audit(IMAGENET_SAMPLES, **kw)
    cached_seconds = time.perf_counter() - start
    pd.testing.assert_frame_equal(first.table, again.table)
    memory = audit(IMAGENET_SAMPLES, **{**kw, "cache": False})
    np.testing.assert_allclose(memory.table["auc"], first.table["auc"])
    assert cached_seconds < first.seconds

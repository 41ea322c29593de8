"""What a cache entry hangs on beyond the first key fields: the model's code, the device and the
autocast dtype, image files rewritten in place; and how many locks a run holds."""

from __future__ import annotations

import dataclasses
import importlib
import os
import resource
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from tests import _counting
from wmprobe.extraction.activations import _entries, extract
from wmprobe.extraction.cache import LOCK_STRIPES, ActivationCache, EntryKey, prepare, release
from wmprobe.models import load_model
from wmprobe.probes.images import scan_folder
from wmprobe.probes.scenario import Scenario

FACTORY = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 5, stride=4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3))){change}

def make():
    return Net()
"""

PICKLED = """
import torch
from torch import nn

class Scaled(nn.Module):
    def __init__(self, scale):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 5, stride=4)
        self.fc = nn.Linear(4, 10)
        self.scale = scale  # a plain attribute: not in the state dict

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3))) * self.scale
"""


@pytest.fixture
def records(tmp_path, image_dir):
    folder = tmp_path / "images"
    folder.mkdir()
    for p in sorted(image_dir.iterdir())[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    return scan_folder(folder).records


def _run(model, records, cache):
    _counting.FRAMES["n"] = 0
    acts = extract(
        model,
        records,
        [Scenario.preset("latin")],
        layers=["logits"],
        batch_size=2,
        num_workers=0,
        progress=False,
        cache=cache,
    )
    return acts


def _import_fresh(name: str) -> None:
    sys.modules.pop(name, None)
    importlib.invalidate_caches()


def test_a_factory_model_whose_code_changed_is_computed_again(tmp_path, records, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    source = tmp_path / "wmp_code_factory.py"
    source.write_text(FACTORY.format(change=""))
    _import_fresh("wmp_code_factory")
    cache = ActivationCache(tmp_path / "cache")
    first = load_model("wmp_code_factory:make", device="cpu")
    before = _run(first, records, cache).get("logits", "clean").copy()
    assert _run(first, records, cache).frames_computed == 0  # the same code: from the cache

    source.write_text(FACTORY.format(change=" * 2.0"))  # same parameters, other function
    _import_fresh("wmp_code_factory")
    second = load_model("wmp_code_factory:make", device="cpu")
    assert second.weights_hash() == first.weights_hash()
    acts = _run(second, records, cache)
    assert acts.frames_computed == 2 * len(records)
    np.testing.assert_allclose(acts.get("logits", "clean"), 2 * before, rtol=1e-5)


def test_another_torch_or_torchvision_version_is_computed_again(tmp_path, records, monkeypatch):
    import torchvision

    cache = ActivationCache(tmp_path / "cache")
    model = load_model(_counting.register("counting_versions"), device="cpu")
    assert _run(model, records, cache).frames_computed > 0
    assert _run(load_model("counting_versions", device="cpu"), records, cache).frames_computed == 0
    monkeypatch.setattr(torch, "__version__", "9.9.9")  # an upgrade: other kernels, other bits
    upgraded = load_model("counting_versions", device="cpu")
    assert upgraded.code_hash() != model.code_hash()
    assert _run(upgraded, records, cache).frames_computed > 0

    monkeypatch.undo()
    plain = load_model("tiny_test_net", device="cpu")
    uses_torchvision = load_model("tiny_test_net", device="cpu")
    uses_torchvision.module.add_module("tv", torchvision.ops.misc.Permute([0, 1, 2, 3]))
    uses_torchvision._code = None
    before = (plain.code_hash(), uses_torchvision.code_hash())
    monkeypatch.setattr(torchvision, "__version__", torchvision.__version__ + "+other")
    plain._code, uses_torchvision._code = None, None  # hashed again
    assert uses_torchvision.code_hash() != before[1]  # it uses a torchvision module
    assert plain.code_hash() == before[0]  # it does not


def test_an_unsafe_loaded_pickled_model_is_keyed_on_its_bytes(tmp_path, records, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "wmp_pickled_net.py").write_text(PICKLED)
    _import_fresh("wmp_pickled_net")
    from wmp_pickled_net import Scaled

    path = tmp_path / "model.pt"
    cache = ActivationCache(tmp_path / "cache")
    runs = []
    for scale in (1.0, 1.0, 3.0):
        torch.save(Scaled(scale), path)
        model = load_model(f"ckpt:{path}", arch="counting_net", unsafe_load=True, device="cpu")
        runs.append(_run(model, records, cache))
    assert [a.frames_computed for a in runs] == [2 * len(records), 0, 2 * len(records)]
    np.testing.assert_allclose(
        runs[2].get("logits", "clean"), 3 * runs[0].get("logits", "clean"), rtol=1e-5
    )


def test_gpu_and_cpu_runs_do_not_share_entries(tmp_path, records):
    cache = ActivationCache(tmp_path / "cache")
    cpu = load_model("counting_net", device="cpu")
    cuda = dataclasses.replace(cpu, device=torch.device("cuda"))  # the key only; nothing runs
    assert cpu.autocast_dtype is None and cuda.autocast_dtype == torch.bfloat16
    scenarios = [Scenario.preset("latin")]
    keys = {}
    for name, model in (("cpu", cpu), ("cuda", cuda)):
        entries = _entries(
            cache,
            model,
            records,
            cache.file_hashes([r.path for r in records]),
            scenarios,
            ["logits"],
            ("clean", "latin"),
            seed=0,
            reduction="mean",
            dtype="float32",
            jpeg_quality=None,
            batch_size=16,
        )
        keys[name] = {k: e.key for k, e in entries.items()}
    for k, key in keys["cuda"].items():
        assert (key.device, key.autocast) == ("cuda", "bfloat16")
        assert (keys["cpu"][k].device, keys["cpu"][k].autocast) == ("cpu", None)
        assert key.digest() != keys["cpu"][k].digest()


def test_an_image_rewritten_with_its_size_and_mtime_restored_is_hashed_again(tmp_path, records):
    path = records[0].path.with_suffix(".bmp")  # uncompressed: a flipped byte is another pixel
    Image.open(records[0].path).convert("RGB").save(path)
    records[0].path.unlink()
    records = scan_folder(path.parent).records
    cache = ActivationCache(tmp_path / "cache")
    time.sleep(1.1)  # files changed less than a second ago are never remembered (see SETTLE_NS)
    model = load_model("counting_net", device="cpu")
    assert _run(model, records, cache).frames_computed == 2 * len(records)
    assert _run(model, records, cache).frames_computed == 0
    stat = os.stat(path)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # one pixel's channel, in place
    with open(path, "r+b") as f:
        f.write(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    acts = _run(model, records, cache)
    assert acts.frames_computed == 2 * len(records)  # the key's image hash moved
    fresh = _run(model, records, None)
    assert np.array_equal(acts.get("logits", "latin"), fresh.get("logits", "latin"))


def test_the_locks_a_run_holds_do_not_grow_with_its_entries(tmp_path):
    cache = ActivationCache(tmp_path / "cache")
    base = EntryKey(
        model="m", weights="w", code="c", device="cpu", autocast=None, variant="v",
        artifact="a", seed=0, layer="logits", reduction="mean", frame_size=224, input_size=224,
        mean=(0.5,) * 3, std=(0.5,) * 3, jpeg_quality=None, images="i", n_images=4,
        dtype="float32",
    )  # fmt: skip
    entries = [cache.entry(dataclasses.replace(base, variant=f"s{i}")) for i in range(600)]
    fds = len(os.listdir("/proc/self/fd"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (fds + 2 * LOCK_STRIPES, hard))
    try:
        locks = prepare(entries, announce=False)  # 600 entries: "Too many open files" before
        try:
            assert len(locks) <= LOCK_STRIPES
            assert len(os.listdir("/proc/self/fd")) - fds <= LOCK_STRIPES
            assert all((e.path / "manifest.json").is_file() for e in entries)
        finally:
            release(locks)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="this system has no FIFOs")
def test_a_fifo_in_an_images_place_is_unreadable_not_waited_on(tmp_path):
    import threading

    from wmprobe.extraction.file_hashes import FileHashes

    fifo = tmp_path / "img.png"
    os.mkfifo(fifo)  # no writer: opening it for reading would block for ever
    got: list[list[str]] = []
    worker = threading.Thread(
        target=lambda: got.append(FileHashes(tmp_path / "files.sqlite")([fifo])), daemon=True
    )
    worker.start()
    worker.join(timeout=10)
    assert got == [["unreadable:OSError"]]

"""Fault injection: a finished audit's cache, damaged or stopped at every step of its writes, and
the rerun. Every rerun gives the tables of a clean run, byte for byte; damage is said on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import wmprobe.extraction.cache as cache_module
from tests import _counting  # noqa: F401 - registers counting_net
from tests.conftest import REPO
from wmprobe._util import temporary_name
from wmprobe.auditing.run import audit
from wmprobe.extraction.cache import ActivationCache

TABLES = ("units.parquet", "units.csv", "counts.csv", "stability.csv", "outputs.csv")
N_IMAGES = 4


def _audit(image_dir: Path, cache: Path, out: Path) -> dict[str, bytes]:
    result = audit(
        image_dir,
        model="counting_net",
        scenarios=["latin"],
        layers=["logits", "features"],
        limit=N_IMAGES,
        num_workers=0,
        batch_size=2,
        progress=False,
        cache=ActivationCache(cache, chunk_size=2),
    )
    result.save(out)
    return {name: (out / name).read_bytes() for name in TABLES}


@pytest.fixture(scope="module")
def clean(image_dir, tmp_path_factory) -> dict[str, bytes]:
    """The tables of an audit computed without a cache entry to start from."""
    root = tmp_path_factory.mktemp("clean")
    return _audit(image_dir, root / "cache", root / "out")


def _entries(cache: Path) -> list[Path]:
    return sorted(p.parent for p in cache.glob("activations/*/*/*/*/manifest.json"))


def _flip_bytes(entry: Path) -> None:
    """Flip a bit of the first image's value of the first unit (in the first chunk)."""
    values = entry / "values.npy"
    units = json.loads((entry / "manifest.json").read_text())["n_units"]
    first = values.stat().st_size - 4 * N_IMAGES * units
    with open(values, "r+b") as f:
        f.seek(first + 1)
        byte = f.read(1)
        f.seek(first + 1)
        f.write(bytes([byte[0] ^ 0x10]))


def _truncate(entry: Path) -> None:
    values = entry / "values.npy"
    os.truncate(values, values.stat().st_size - 8)


def _other_order(entry: Path) -> None:
    """A valid .npy of the right dtype and shape, in C order: the same bytes read otherwise."""
    values = np.load(entry / "values.npy")
    np.save(entry / "values.npy", np.ascontiguousarray(values))


def _no_rows(entry: Path) -> None:
    (entry / "rows.json").unlink()


def _other_rows(entry: Path) -> None:
    rows = json.loads((entry / "rows.json").read_text())
    rows["ok"][0] = not rows["ok"][0]
    (entry / "rows.json").write_text(json.dumps(rows))


def _garbled_manifest(entry: Path) -> None:
    text = (entry / "manifest.json").read_text()
    (entry / "manifest.json").write_text(text[: len(text) // 2])


def _other_dtype_header(entry: Path) -> None:
    values = np.load(entry / "values.npy")
    np.save(entry / "values.npy", np.asfortranarray(values.astype(np.float16)))


DAMAGE = {
    "flipped bytes": _flip_bytes,
    "truncated values": _truncate,
    "other memory order": _other_order,
    "missing rows": _no_rows,
    "edited rows": _other_rows,
    "garbled manifest": _garbled_manifest,
    "other dtype": _other_dtype_header,
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_entry_is_computed_again(damage, clean, image_dir, tmp_path, capfd):
    cache, out = tmp_path / "cache", tmp_path / "out"
    assert _audit(image_dir, cache, out) == clean
    entry = next(e for e in _entries(cache) if "/latin/features/" in str(e))
    DAMAGE[damage](entry)
    capfd.readouterr()
    assert _audit(image_dir, cache, out) == clean
    assert f"the cache entry {entry} is damaged" in capfd.readouterr().err
    assert _audit(image_dir, cache, out) == clean  # rebuilt: no damage left to report
    assert "damaged" not in capfd.readouterr().err


class Killed(BaseException):
    """Stands for SIGKILL: nothing after the step runs (``finally`` blocks release the locks
    and close files, as the kernel does for a killed process)."""


class StopAt:
    """Count the cache's file-system steps (renames into place, removals of chunk folders,
    writes of values) and stop the run at step ``at``; a write of values is stopped half-done."""

    def __init__(self, at: int | None):
        self.at, self.steps = at, 0

    def _step(self) -> bool:
        self.steps += 1
        return self.steps == self.at

    def replace(self, src, dst):
        if self._step():
            raise Killed
        os.replace(src, dst)

    def rmtree(self, path, ignore_errors=False):
        if self._step():
            raise Killed
        shutil.rmtree(path, ignore_errors=ignore_errors)

    def write_rows(self, target, start, rows):
        if self._step():
            half = rows.shape[1] // 2  # the first half of the units written, as a kill would
            target[start : start + rows.shape[0], :half] = rows[:, :half]
            raise Killed
        target[start : start + rows.shape[0]] = rows


class _Os:
    def __init__(self, stop: StopAt):
        self._stop = stop

    def __getattr__(self, name):
        return self._stop.replace if name == "replace" else getattr(os, name)


class _Shutil:
    def __init__(self, stop: StopAt):
        self._stop = stop

    def __getattr__(self, name):
        return self._stop.rmtree if name == "rmtree" else getattr(shutil, name)


def _atomic_write(stop: StopAt):
    """The cache's ``atomic_write`` with its rename as a step (a stop leaves the temporary file,
    as SIGKILL would)."""

    def write(path, text: str) -> Path:
        tmp = temporary_name(Path(path))
        tmp.write_text(text, encoding="utf-8")
        stop.replace(tmp, path)
        return Path(path)

    return write


def _stopped_run(image_dir, cache, out, at, monkeypatch) -> StopAt:
    stop = StopAt(at)
    with monkeypatch.context() as patch:
        patch.setattr(cache_module, "os", _Os(stop))
        patch.setattr(cache_module, "shutil", _Shutil(stop))
        patch.setattr(cache_module, "atomic_write", _atomic_write(stop))
        patch.setattr(cache_module, "write_rows", stop.write_rows)
        with contextlib.suppress(Killed):
            _audit(image_dir, cache, out)
    return stop


@pytest.mark.slow
def test_a_run_stopped_at_any_step_of_its_writes_resumes(
    clean, image_dir, tmp_path, monkeypatch, capfd
):
    total = _stopped_run(image_dir, tmp_path / "count", tmp_path / "o", None, monkeypatch).steps
    # per entry: manifest, values.npy, manifest, 2 chunks x (values + marker), rows, manifest,
    # chunks folder; entries: clean and latin x logits and features
    assert total == 4 * (3 + 2 * (1 + 1) + 3)
    for at in range(1, total + 1):
        cache, out = tmp_path / f"cache{at}", tmp_path / f"out{at}"
        assert _stopped_run(image_dir, cache, out, at, monkeypatch).steps == at
        capfd.readouterr()
        assert _audit(image_dir, cache, out) == clean, f"stopped at step {at}"
        assert "damaged" not in capfd.readouterr().err, f"stopped at step {at}"
        shutil.rmtree(cache)


@pytest.mark.slow
def test_damage_in_an_unfinished_entry_is_found_before_it_is_resumed(
    clean, image_dir, tmp_path, monkeypatch, capfd
):
    cache, out = tmp_path / "cache", tmp_path / "out"
    _stopped_run(image_dir, cache, out, 21, monkeypatch)  # writing the second chunk
    markers = sorted(cache.glob("activations/*/*/*/*/chunks/000000.json"))
    assert len(markers) == 4 and not list(cache.glob("activations/*/*/*/*/rows.json"))
    flipped, cut = (m.parent.parent for m in markers[:2])
    _flip_bytes(flipped)
    marker = cut / "chunks" / "000000.json"
    marker.write_text(marker.read_text()[:10])
    capfd.readouterr()
    assert _audit(image_dir, cache, out) == clean
    err = capfd.readouterr().err
    assert f"the cache entry {flipped} is damaged (the values of images 0-1" in err
    assert f"the cache entry {cut} is damaged (chunks/000000.json is unreadable" in err


#: In a child process: the audit of `_audit`, SIGKILLed by the kernel at rename number KILL_AT.
KILLED_CHILD = """
import os, signal, sys
sys.path[:0] = [{src!r}, {repo!r}]
import wmprobe.extraction.cache as cache_module
from tests.extraction.test_cache_faults import _audit
from pathlib import Path

renames = [0]
def step():
    renames[0] += 1
    if renames[0] == {at}:
        os.kill(os.getpid(), signal.SIGKILL)

class Os:
    def __getattr__(self, name):
        return getattr(os, name)
    def replace(self, src, dst):
        step()
        os.replace(src, dst)

def atomic_write(path, text, write=cache_module.atomic_write):
    step()
    return write(path, text)

cache_module.os, cache_module.atomic_write = Os(), atomic_write
_audit(Path({images!r}), Path({cache!r}), Path({out!r}))
"""


@pytest.mark.slow
def test_a_sigkill_right_after_values_npy_is_renamed_into_place_resumes(
    clean, image_dir, tmp_path, capfd
):
    cache, out = tmp_path / "cache", tmp_path / "out"
    # renames 1-4: the four entries' first manifests; 5: the first values.npy; 6: its manifest
    script = KILLED_CHILD.format(
        src=str(REPO / "src"), repo=str(REPO), at=6, images=str(image_dir), cache=str(cache),
        out=str(out),
    )  # fmt: skip
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert child.returncode == -9, child.stderr
    values = list(cache.glob("activations/*/*/*/*/values.npy"))
    assert len(values) == 1
    manifest = json.loads((values[0].parent / "manifest.json").read_text())
    assert manifest["n_units"] is None  # the state that blocked the entry for good before
    capfd.readouterr()
    assert _audit(image_dir, cache, out) == clean
    assert "damaged" not in capfd.readouterr().err

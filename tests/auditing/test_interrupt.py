"""Interrupting `wmprobe audit`: Ctrl-C and SIGKILL at several points, then the same command.

Each run is a real process (the CLI with DataLoader workers). The chain below interrupts one run
folder and one cache four times, each time further along, and the final rerun must give the
tables of an uninterrupted run, byte for byte.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO
from tests.extraction.test_cache import _markers as chunk_markers

#: Run in the child: the counting test model, chunks of 2 images, and (when asked) output files
#: written slowly so that a signal can land while they are being written.
CHILD = f"""
import os, sys, time
sys.path[:0] = [{str(REPO / "src")!r}, {str(REPO)!r}]
import tests._counting
import wmprobe.auditing.runfolder as runfolder
import wmprobe.extraction.cache
wmprobe.extraction.cache.ActivationCache.__init__.__kwdefaults__["chunk_size"] = 2
if os.environ.get("SLOW_WRITES"):  # every file of a run folder goes through this one write
    _write = runfolder.atomic_write
    def _slow(path, data):
        time.sleep(float(os.environ["SLOW_WRITES"]))
        return _write(path, data)
    runfolder.atomic_write = _slow
from wmprobe.cli import main
main()
"""

TABLES = ("units.parquet", "units.csv", "counts.csv", "stability.csv", "outputs.csv")


def _argv(images: Path, out: Path, cache: Path) -> list[str]:
    return [
        sys.executable, "-c", CHILD, "audit", "--images", str(images), "--out", str(out),
        "--model", "counting_net", "--scenarios", "latin,numerals", "--cache", str(cache),
        "--batch-size", "2", "--workers", "1", "--quiet",
    ]  # fmt: skip


def _start(argv: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def _markers(cache: Path) -> int:
    """Finished chunks of unfinished cache entries (a finished entry drops its chunk files)."""
    return len(chunk_markers(cache))


def _finished_entries(cache: Path) -> int:
    entries = cache.glob("activations/counting_net/*/*/*/")
    return sum(not (e / "chunks").exists() and (e / "values.npy").exists() for e in entries)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (status {proc.returncode}) too early:\n{out}\n{err}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("the run did not get that far in time")
        time.sleep(0.02)


def _interrupt(proc: subprocess.Popen, sig: signal.Signals) -> tuple[int, str]:
    os.killpg(proc.pid, sig)  # the whole group: the main process and its DataLoader workers
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


@pytest.mark.slow
def test_interrupted_runs_resume_to_the_tables_of_an_uninterrupted_run(image_dir, tmp_path):
    straight = subprocess.run(
        _argv(image_dir, tmp_path / "straight", tmp_path / "fresh-cache"),
        capture_output=True,
        text=True,
    )
    assert straight.returncode == 0, straight.stderr
    total = 6 * 6  # 12 images in chunks of 2; entries: clean, latin, numerals x two layers

    out, cache = tmp_path / "run", tmp_path / "cache"
    argv = _argv(image_dir, out, cache)
    seen = []

    # 1. SIGKILL after the first chunk.
    proc = _start(argv, WMPROBE_TEST_DELAY="0.3")
    _wait_for(lambda: _markers(cache) >= 1, proc)
    assert _interrupt(proc, signal.SIGKILL)[0] == -signal.SIGKILL
    seen.append(_markers(cache))

    # 2. Ctrl-C (SIGINT to the process group) a few chunks further on.
    proc = _start(argv, WMPROBE_TEST_DELAY="0.3")
    _wait_for(lambda: _markers(cache) >= seen[-1] + 6, proc)
    status, err = _interrupt(proc, signal.SIGINT)
    assert status == 130, err
    assert "Interrupted" in err and "the same command resumes" in err
    assert "Traceback" not in err
    seen.append(_markers(cache))

    # 3. SIGKILL again, further on.
    proc = _start(argv, WMPROBE_TEST_DELAY="0.3")
    _wait_for(lambda: _markers(cache) >= seen[-1] + 6, proc)
    assert _interrupt(proc, signal.SIGKILL)[0] == -signal.SIGKILL
    seen.append(_markers(cache))
    assert seen[0] < seen[1] < seen[2] < total  # each run went on from the last one
    assert not (out / "run.json").exists()

    # 4. SIGKILL while the output files are being written: extraction is done by then.
    proc = _start(argv, SLOW_WRITES="0.3")
    _wait_for(lambda: (out / "units.parquet").exists(), proc)
    assert _interrupt(proc, signal.SIGKILL)[0] == -signal.SIGKILL
    assert _finished_entries(cache) == 6
    assert not (out / "run.json").exists()  # run.json comes last: the run is not complete

    final = subprocess.run(argv, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert (out / "run.json").exists()
    for name in TABLES:
        assert (out / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name
    a, b = (pd.read_parquet(d / "units.parquet") for d in (out, tmp_path / "straight"))
    pd.testing.assert_frame_equal(a, b)
    assert not list(out.glob("*.tmp"))

    # 5. A rerun into the finished folder, killed while writing: the old run.json is gone first,
    # so the half-rewritten folder does not pass for a finished run.
    proc = _start(argv, SLOW_WRITES="0.3")
    _wait_for(lambda: not (out / "run.json").exists(), proc)
    assert _interrupt(proc, signal.SIGKILL)[0] == -signal.SIGKILL
    assert not (out / "run.json").exists()

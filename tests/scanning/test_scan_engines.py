"""``scan`` on the Ray engine gives the local engine's files byte for byte, resumes from the same
cache, and ``--engine`` / ``--ray-address`` behave as for the audit (issue 15, point 3).

The Ray tests start their own Ray on 127.0.0.1 (2 CPUs, a small object store, no dashboard) and
stop it by the engine's ``close``. The detector is a map head with fixed random weights on the
planted mark net (no training), over 20 small images and two unreadable files.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tests.extraction.test_engines import _without_ray
from wmprobe.cli import main
from wmprobe.errors import WmprobeError
from wmprobe.scanning import remote
from wmprobe.scanning import run as run_module
from wmprobe.scanning.detector import Detector, MapHead
from wmprobe.scanning.run import scan

pytestmark = pytest.mark.slow
STORE = 80 * 1024 * 1024
FILES = ("scores.csv", "skipped.csv", "flagged.txt")


@pytest.fixture(scope="module")
def folder(planted_folders, tmp_path_factory) -> Path:
    """20 planted test images (every other one marked), a corrupt file and a 10-px image."""
    _, test, _ = planted_folders
    root = tmp_path_factory.mktemp("scan_engines") / "images"
    (root / "b").mkdir(parents=True)
    for i, src in enumerate(sorted((test / "sub").glob("*.png"))[:20]):
        shutil.copy(src, root / ("b" if i % 3 else "") / src.name)
    (root / "broken.png").write_bytes(b"not a png")
    Image.new("RGB", (10, 10)).save(root / "b" / "tiny.png")
    return root


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory) -> Path:
    """A map detector with seeded random weights on ``planted_mark_net``'s ``feat`` layer."""
    torch.manual_seed(3)
    head = MapHead(channels=4, hidden=8, families=2)
    det = Detector(
        kind="map",
        model="planted_mark_net",
        layer="feat",
        input_size=128,
        state={k: v.clone() for k, v in head.state_dict().items()},
        families=("corner_url", "date_stamp"),
        hidden=8,
        calibration=np.linspace(-2.0, 2.0, 50),
        info={"grid": 32},
    )
    return det.save(tmp_path_factory.mktemp("det") / "det.pt")


@pytest.fixture
def small_chunks(monkeypatch) -> int:
    """Chunks of 8 images: 3 chunks for the 22 files."""
    monkeypatch.setattr(run_module, "CHUNK", 8)
    return 8


@pytest.fixture(scope="module")
def local_files(folder, detector_file, tmp_path_factory) -> dict[str, bytes]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_module, "CHUNK", 8)
        out = tmp_path_factory.mktemp("local") / "scan"
        scan(folder, out, detector=detector_file, top=4, fpr=0.1, device="cpu")
    return {name: (out / name).read_bytes() for name in FILES}


@pytest.fixture
def ray_engine():
    pytest.importorskip("ray", reason="scan --engine ray needs the wmprobe[ray] extra")
    from wmprobe.extraction.engines.ray import RayEngine

    with RayEngine(num_cpus=2, object_store_memory=STORE) as engine:
        yield engine


def test_a_ray_scan_writes_the_local_scans_files_and_resumes_from_its_cache(
    folder, detector_file, local_files, small_chunks, ray_engine, tmp_path
):
    import ray

    out = tmp_path / "ray"
    result = scan(folder, out, detector=detector_file, top=4, fpr=0.1, engine=ray_engine)
    assert ray.is_initialized()
    assert len(result.table) == 20 and len(result.skipped) == 2
    assert json.loads((out / "scan.json").read_text())["computed_now"] == 22
    assert len(list((out / "cache").glob("*/chunk-*.npz"))) == 3
    for name in FILES:
        assert (out / name).read_bytes() == local_files[name], name

    # stopped after two chunks: a local scan of the first 16 files fills chunks 0 and 1, then
    # the Ray scan computes only chunk 2 and ends with the same bytes
    part = tmp_path / "part"
    scan(folder, part, detector=detector_file, top=4, fpr=0.1, device="cpu", limit=16)
    scan(folder, part, detector=detector_file, top=4, fpr=0.1, engine=ray_engine)
    assert json.loads((part / "scan.json").read_text())["computed_now"] == 22 - 16
    for name in FILES:
        assert (part / name).read_bytes() == local_files[name], name

    # interrupted (Ctrl-C on the driver) once the first chunk is stored: the rerun computes the
    # other two and ends with the same bytes
    killed, real, saved = tmp_path / "killed", remote._save_chunk, []

    def interrupted_after_one(*args):
        if saved:
            raise KeyboardInterrupt
        saved.append(real(*args))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(remote, "_save_chunk", interrupted_after_one)
        with pytest.raises(KeyboardInterrupt):
            scan(folder, killed, detector=detector_file, top=4, fpr=0.1, engine=ray_engine)
    assert len(list((killed / "cache").glob("*/chunk-*.npz"))) == 1
    scan(folder, killed, detector=detector_file, top=4, fpr=0.1, engine=ray_engine)
    assert json.loads((killed / "scan.json").read_text())["computed_now"] == 22 - 8
    for name in FILES:
        assert (killed / name).read_bytes() == local_files[name], name


def test_a_detector_object_travels_to_the_workers(
    folder, detector_file, local_files, small_chunks, ray_engine, tmp_path
):
    from wmprobe.scanning.detector import load_detector

    det = load_detector(detector_file)
    scan(folder, tmp_path / "s", detector=det, top=4, fpr=0.1, engine=ray_engine)
    assert (tmp_path / "s" / "scores.csv").read_bytes() == local_files["scores.csv"]


def test_cli_scan_engine_ray(folder, detector_file, local_files, small_chunks, tmp_path):
    pytest.importorskip("ray", reason="scan --engine ray needs the wmprobe[ray] extra")
    import ray

    args = ["scan", "--images", str(folder), "--out", str(tmp_path / "s"), "--top", "4"]
    args += ["--detector", str(detector_file), "--fpr", "0.1", "--quiet", "--engine", "ray"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "scored 20 images (2 unreadable)" in result.output
    assert not ray.is_initialized()  # the Ray it started for the command is stopped
    assert (tmp_path / "s" / "scores.csv").read_bytes() == local_files["scores.csv"]


def test_a_ray_address_without_the_ray_engine_is_a_usage_error(folder, tmp_path):
    args = ["scan", "--images", str(folder), "--out", str(tmp_path / "s")]
    result = CliRunner().invoke(main, [*args, "--ray-address", "127.0.0.1:1"])
    assert result.exit_code == 2
    assert "--ray-address needs --engine ray" in result.output
    assert not (tmp_path / "s").exists()


def test_scan_engine_ray_without_ray_says_how_to_install_it(folder, tmp_path):
    refused = _without_ray(
        "from wmprobe.cli import main\nmain()\n",
        *("scan", "--images", str(folder), "--out", str(tmp_path / "s"), "--engine", "ray"),
    )
    assert refused.returncode == 1
    assert "pip install 'wmprobe[ray]'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_worker_never_scores_with_another_detector(detector_file, tmp_path):
    from wmprobe.extraction.engines.base import WorkerResources
    from wmprobe.scanning.backbone import FeatureTap
    from wmprobe.scanning.detector import DetectorError, load_detector
    from wmprobe.scanning.remote import scan_job

    det = load_detector(detector_file)
    job = scan_job(det, detector_file, FeatureTap("planted_mark_net", "feat", device="cpu"), 4)
    worker = WorkerResources(cpus=1)
    loaded, tap = job.setup(worker)  # as a worker does: from the file, checked
    assert loaded.digest() == det.digest() and tap.layer == "feat"
    recipe = job.setup.args[0]
    other = dataclasses.replace(recipe, digest="0" * 64)
    with pytest.raises(DetectorError, match="another detector"):
        remote._setup(other, worker)
    missing = dataclasses.replace(recipe, detector=str(tmp_path / "elsewhere.pt"))
    with pytest.raises(DetectorError, match="same path on every node"):
        remote._setup(missing, worker)
    with pytest.raises(WmprobeError, match="cuda worker got a cpu job"):  # the driver's device
        remote._setup(recipe, WorkerResources(cpus=1, device="cuda"))


def test_a_wrong_ray_address_is_a_one_line_error_naming_it(folder, tmp_path):
    pytest.importorskip("ray", reason="scan --engine ray needs the wmprobe[ray] extra")
    import ray

    assert not ray.is_initialized()  # (a running session would be used whatever the address)
    args = ["scan", "--images", str(folder), "--out", str(tmp_path / "s"), "--engine", "ray"]
    result = CliRunner().invoke(main, [*args, "--ray-address", "127.0.0.1:1", "--quiet"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "No Ray cluster at '127.0.0.1:1'" in lines[0]


def test_the_baseline_check_scans_on_the_engine_it_is_given(
    folder, detector_file, ray_engine, tmp_path, monkeypatch
):
    from wmprobe.scanning.baseline import check_baseline

    here = check_baseline(folder, tmp_path / "here", detector=detector_file, fpr=0.1, device="cpu")
    calls = []
    real = remote.score_on_engine
    monkeypatch.setattr(remote, "score_on_engine", lambda *a, **k: calls.append(1) or real(*a, **k))
    there = check_baseline(
        folder, tmp_path / "ray", detector=detector_file, fpr=0.1, device="cpu", engine=ray_engine
    )
    assert calls  # scored by the Ray workers
    assert there.flagged == here.flagged and there.scored == here.scored
    assert (tmp_path / "ray" / "scores.csv").read_bytes() == (
        tmp_path / "here" / "scores.csv"
    ).read_bytes()


def test_audit_check_baseline_uses_the_audits_engine(image_dir, tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="--engine ray needs the wmprobe[ray] extra")
    from wmprobe.scanning import baseline

    engines = []
    real = baseline.scan
    monkeypatch.setattr(
        baseline, "scan", lambda *a, **k: engines.append(k.get("engine")) or real(*a, **k)
    )
    args = ["audit", "--images", str(image_dir), "--out", str(tmp_path / "run")]
    args += ["--model", "tiny_test_net", "--scenarios", "chinese", "--quiet", "--limit", "4"]
    result = CliRunner().invoke(main, [*args, "--engine", "ray", "--check-baseline"])
    assert result.exit_code == 0, result.output
    assert [getattr(e, "name", None) for e in engines] == ["ray"]

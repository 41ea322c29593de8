"""End to end on a tiny model with a planted mark detector: train, scan, evaluate, resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from wmprobe.scanning.detector import load_detector
from wmprobe.scanning.make_detector import train_detector
from wmprobe.scanning.run import scan

#: Every test here shares a detector trained in a fixture (over 5 s): the whole file is slow.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def planted_detector(planted_folders, tmp_path_factory):
    bg, _, _ = planted_folders
    out = tmp_path_factory.mktemp("det") / "det.pt"
    det = train_detector(
        bg, out, kind="map", model="planted_mark_net", layer="feat", input_size=128,
        backgrounds=120, epochs=10, cache_dir=out.parent / "cache", device="cpu",
    )  # fmt: skip
    return det, out


def test_detector_file_loads_weights_only(planted_detector):
    det, path = planted_detector
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"config", "state", "calibration"}
    again = load_detector(path)
    assert again.digest() == det.digest()
    assert json.loads(path.with_suffix(".json").read_text())["kind"] == "map"


def test_learned_detector_finds_planted_marks(planted_folders, planted_detector, tmp_path):
    _, test, labels = planted_folders
    _, path = planted_detector
    result = scan(
        test, tmp_path / "scan", detector=path, top=8, fpr=0.1, labels=labels, device="cpu"
    )
    ev = result.evaluation
    assert ev["auroc"] > 0.9, ev
    assert ev["average_precision"] > 0.85, ev
    table = result.table
    marked = table[table["path"].str.contains("t0[0-3][13579]")]
    # the region that scored lies on the drawn mark for most marked images
    assert (marked["score"] > table["score"].median()).mean() > 0.8
    for name in ("scores.parquet", "scores.csv", "flagged.txt", "contact_sheet.png", "index.html",
                 "scan.json", "evaluation.json"):  # fmt: skip
        assert (tmp_path / "scan" / name).is_file(), name
    assert pd.read_parquet(tmp_path / "scan" / "scores.parquet")["rank"].tolist() == list(
        range(1, len(table) + 1)
    )


def test_resumed_scan_gives_identical_scores(
    planted_folders, planted_detector, tmp_path, monkeypatch
):
    from wmprobe.scanning import run as run_module

    _, test, _ = planted_folders
    _, path = planted_detector
    monkeypatch.setattr(run_module, "CHUNK", 8)
    whole = scan(test, tmp_path / "whole", detector=path, top=0, fpr=0.1, device="cpu").table
    calls = {"n": 0}
    real = run_module.score_paths

    def dies_on_third_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "score_paths", dies_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        scan(test, tmp_path / "killed", detector=path, top=0, fpr=0.1, device="cpu")
    monkeypatch.setattr(run_module, "score_paths", real)
    resumed = scan(test, tmp_path / "killed", detector=path, top=0, fpr=0.1, device="cpu")
    meta = json.loads((tmp_path / "killed" / "scan.json").read_text())
    assert meta["computed_now"] == len(whole) - 16  # two chunks came from the cache
    pd.testing.assert_frame_equal(resumed.table, whole)
    assert np.array_equal(resumed.table["score"].to_numpy(), whole["score"].to_numpy())


def test_check_baseline_lists_flagged_images(planted_folders, planted_detector, tmp_path):
    from wmprobe.scanning.baseline import check_baseline

    _, test, _ = planted_folders
    _, path = planted_detector
    check = check_baseline(test, tmp_path / "b", detector=path, fpr=0.1, device="cpu")
    lines = check.lines()
    assert check.scored == 40 and f"{len(check.flagged)} of 40 baseline images" in lines[0]
    assert all(line.strip().startswith("sub/t") for line in lines[1:])
    # the marked test images are the odd ones
    assert sum(int(p[5:8]) % 2 for p in check.flagged) >= 0.8 * len(check.flagged)


def test_cli_scan_with_labels(planted_folders, planted_detector, tmp_path):
    from click.testing import CliRunner

    from wmprobe.cli import main

    _, test, labels = planted_folders
    _, path = planted_detector
    args = ["scan", "--images", str(test), "--out", str(tmp_path / "s")]
    args += ["--detector", str(path), "--fpr", "0.1"]
    args += ["--labels", str(labels), "--device", "cpu", "--quiet", "--top", "4"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "evaluation on 40 labelled images (20 marked): AUROC" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\nsub/t000.png,yes\n")
    result = CliRunner().invoke(main, [*args[:9], "--labels", str(bad), "--device", "cpu"])
    assert result.exit_code == 1 and "unknown label(s) (line 2: 'yes')" in result.output


@pytest.mark.slow
def test_audit_check_baseline_lists_flagged_in_summary(image_dir, tmp_path):
    from click.testing import CliRunner

    from wmprobe.cli import main

    out = tmp_path / "run"
    args = ["audit", "--images", str(image_dir), "--out", str(out), "--model", "tiny_test_net"]
    args += ["--scenarios", "chinese", "--workers", "0", "--quiet", "--limit", "4"]
    result = CliRunner().invoke(main, [*args, "--check-baseline"])
    assert result.exit_code == 0, result.output
    summary = (out / "summary.txt").read_text()
    assert "baseline check (map detector" in summary and "of 4 baseline images flagged" in summary
    scanned = pd.read_csv(out / "baseline_scan" / "scores.csv")
    assert len(scanned) == 4
    assert summary.count("\n  img_") == int(scanned["flagged"].sum())

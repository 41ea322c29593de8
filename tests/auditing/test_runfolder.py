"""The run folder end to end: what audit, reproduce and mitigate write, and report reads back.

The two chains of issue 12 (several models in one audit, then report; a spec file through audit,
report, reproduce and mitigate), unfinished folders, stale files of an earlier run, damaged
outputs, unreadable images in the contact sheets, and an --out that cannot be written.
"""

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

import tests._counting as counting
from tests.reporting.test_report import check_figure_csvs_match_tables
from tests.study_helpers import labelled_images
from wmprobe.auditing import runfolder
from wmprobe.cli import main

pytestmark = pytest.mark.slow

SPEC = """
[scenarios.url]
text = "www.stock-images.example"
font = "serif"
relative_size = 0.06
color = "white"
stroke_width = 1
stroke_color = "black"
position = "bottom-right"
margin = 4

[scenarios.dose]
preset = "numerals"
opacity = [0.5, 1.0]
"""

QUICK = ["--workers", "0", "--quiet"]


def _run(*argv) -> object:
    result = CliRunner().invoke(main, [str(a) for a in argv])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return labelled_images(tmp_path_factory.mktemp("labelled"), n=6)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "my_spec.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def downstream(tmp_path_factory):
    root = tmp_path_factory.mktemp("downstream")
    rng = np.random.default_rng(3)
    for c, colour in enumerate([(200, 40, 40), (40, 40, 200)]):
        (root / f"class_{c}").mkdir()
        for i in range(6):
            pixels = np.clip(rng.normal(colour, 50, size=(96, 96, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class_{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def finished(images, tmp_path_factory):
    """One finished single-model audit (labelled images: accuracy.csv and the evidence)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    cache = out.parent / "cache"
    argv = ["audit", "--images", images, "--out", out, "--model", "tiny_imagenet_net"]
    result = _run(*argv, "--scenarios", "latin", "--cache", cache, *QUICK)
    assert result.exit_code == 0, result.output
    return out


def test_several_models_in_one_audit_then_report(images, tmp_path):
    out = tmp_path / "X"
    argv = [
        "audit",
        "--model",
        "tiny_imagenet_net,tiny_test_net_b",
        "--images",
        images,
        "--out",
        out,
    ]
    result = _run(*argv, "--limit", 4, "--scenarios", "chinese,latin", *QUICK)
    assert result.exit_code == 0, result.output
    for model in ("tiny_imagenet_net", "tiny_test_net_b"):  # the layout reproduce writes
        assert runfolder.is_finished(out / "models" / model), model
    assert not (out / "run.json").exists()
    study = json.loads((out / "study.json").read_text())
    assert study["models"] == ["tiny_imagenet_net", "tiny_test_net_b"]
    assert {s["status"] for s in study["statuses"].values()} == {"audited"}
    assert study["command"].startswith("wmprobe audit --images")
    report = _run("report", out)
    assert report.exit_code == 0, report.output
    html = (out / "report" / "report.html").read_text()
    assert "tiny_test_net_b" in html and "2 model(s) audited" in html
    checked = check_figure_csvs_match_tables(out, out / "report" / "figures")
    assert {"units_tiny_imagenet_net", "units_tiny_test_net_b", "sheet_latin"} <= set(checked)


def test_a_later_request_with_other_models_reports_only_its_own(images, tmp_path):
    out = tmp_path / "X"
    first = ["audit", "--model", "tiny_imagenet_net,tiny_test_net_b", "--images", images]
    assert _run(*first, "--out", out, "--limit", 3, "--scenarios", "latin", *QUICK).exit_code == 0
    second = ["audit", "--model", "tiny_imagenet_net,tiny_test_net", "--images", images]
    assert _run(*second, "--out", out, "--limit", 3, "--scenarios", "latin", *QUICK).exit_code == 0
    assert runfolder.is_finished(out / "models" / "tiny_test_net_b")  # left by the first request
    report = _run("report", out)
    assert report.exit_code == 0, report.output
    html = (out / "report" / "report.html").read_text()
    assert "tiny_test_net_b" not in html and "tiny_test_net" in html
    assert "2 model(s) audited" in html


def test_a_model_that_cannot_be_audited_is_skipped_with_the_reason(images, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no torchvision weights here
    out = tmp_path / "X"
    argv = ["audit", "--model", "tiny_imagenet_net,resnet18", "--images", images, "--out", out]
    result = _run(*argv, "--limit", 3, "--scenarios", "latin", *QUICK)
    assert result.exit_code == 1
    assert "1 of the 2 models were skipped" in result.output and "resnet18" in result.output
    study = json.loads((out / "study.json").read_text())
    assert study["statuses"]["resnet18"]["status"] == "skipped"
    assert "not available offline" in study["statuses"]["resnet18"]["reason"]
    assert runfolder.is_finished(out / "models" / "tiny_imagenet_net")
    report = _run("report", out)
    assert report.exit_code == 0 and "resnet18" in (out / "report/report.html").read_text()


def test_a_spec_file_through_audit_report_reproduce_and_mitigate(
    images, spec_file, downstream, tmp_path
):
    names = ["url", "dose@opacity=0.5", "dose@opacity=1"]
    audit = tmp_path / "A"
    argv = ["audit", "--images", images, "--out", audit, "--model", "tiny_imagenet_net"]
    result = _run(*argv, "--scenarios", spec_file, "--limit", 6, *QUICK)
    assert result.exit_code == 0, result.output
    config = runfolder.read_run_json(audit)
    assert [d["name"] for d in config["scenario_definitions"]] == names
    report = _run("report", audit)
    assert report.exit_code == 0, report.output
    assert "differs from the audited one" not in report.output
    checked = check_figure_csvs_match_tables(audit, audit / "report" / "figures")
    assert {"sheet_url", "sheet_dose@opacity=0.5", "units_tiny_imagenet_net"} <= set(checked)
    sheet = pd.read_csv(audit / "report" / "figures" / "sheet_url.csv")
    assert set(sheet["text"]) == {"www.stock-images.example"}

    study = tmp_path / "S"
    argv = ["reproduce", "--images", images, "--models", "tiny_imagenet_net", "--out", study]
    result = _run(*argv, "--scenarios", spec_file, "--limit", 6, *QUICK)
    assert result.exit_code == 0, result.output
    assert (study / "sheets" / "url.png").is_file()
    assert runfolder.read_run_json(study / "models" / "tiny_imagenet_net")["scenarios"] == names
    assert (study / "report" / "report.html").is_file()
    again = _run(*argv, "--scenarios", spec_file, "--limit", 6, *QUICK)  # resumes
    assert again.exit_code == 0 and "not audited again" in again.output
    changed = spec_file.parent / "changed" / spec_file.name  # same names, other pixels
    changed.parent.mkdir()
    changed.write_text(SPEC.replace("www.stock-images.example", "www.other.example"))
    redo = _run(*argv, "--scenarios", changed, "--limit", 6, *QUICK)
    assert redo.exit_code == 0 and "its scenario_specs was" in redo.output

    mit = tmp_path / "M"
    argv = [
        "mitigate",
        "--model",
        "tiny_imagenet_net",
        "--images",
        images,
        "--downstream",
        downstream,
    ]
    argv += ["--scenario", spec_file, "--fractions", "0,0.5", "--limit", 6, "--out", mit]
    result = _run(*argv, *QUICK)
    assert result.exit_code == 0, result.output
    config = runfolder.read_run_json(mit)
    assert config["kind"] == "mitigation" and config["scenarios"] == names
    assert "ranked by d on url" in result.output
    report = _run("report", mit)
    assert report.exit_code == 0, report.output
    assert (
        "Heads with the most sensitive units left out" in (mit / "report/report.html").read_text()
    )


def test_an_unfinished_folder_says_how_to_resume(images, tmp_path, monkeypatch):
    import wmprobe.auditing.many
    import wmprobe.auditing.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(wmprobe.auditing.run, "audit", interrupted)
    monkeypatch.setattr(wmprobe.auditing.many, "audit", interrupted)
    cases = (
        ("tiny_imagenet_net", tmp_path / "one"),
        ("tiny_imagenet_net,tiny_test_net_b", tmp_path / "two"),
    )
    for models, out in cases:
        argv = ["audit", "--images", images, "--out", out, "--model", models, *QUICK]
        assert _run(*argv).exit_code == 130
        report = _run("report", out)
        assert report.exit_code == 1
        assert "unfinished" in report.output and "holds no audit:" not in report.output
        assert f"wmprobe audit --images {images} --out {out}" in report.output


def test_a_rerun_leaves_nothing_of_the_earlier_run(finished, image_dir, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    assert (out / "accuracy.csv").is_file()  # labelled images
    (out / "my_notes.txt").write_text("mine")  # not wmprobe's: kept
    (out / ".units.csv.4242.tmp").write_text("half")  # an interrupted write of units.csv
    assert _run("report", out).exit_code == 0
    argv = ["audit", "--images", image_dir, "--out", out, "--model", "tiny_imagenet_net"]
    result = _run(*argv, "--scenarios", "latin", "--limit", 3, *QUICK)  # unlabelled images
    assert result.exit_code == 0, result.output
    assert not (out / "accuracy.csv").exists()
    assert (out / "my_notes.txt").read_text() == "mine"
    assert not list(out.glob(".*.tmp"))
    assert not (out / "report" / "report.html").exists()  # the report of the earlier run
    report = _run("report", out)
    assert report.exit_code == 0 and "no accuracy" in report.output


def test_report_passes_over_unreadable_images(images, tmp_path):
    folder = tmp_path / "imgs"
    shutil.copytree(images, folder)
    first = sorted(folder.iterdir())[0]
    out = tmp_path / "run"
    argv = ["audit", "--images", folder, "--out", out, "--model", "tiny_imagenet_net"]
    assert _run(*argv, "--scenarios", "latin", *QUICK).exit_code == 0
    first.write_bytes(b"not an image any more")  # unreadable after the audit, too
    report = _run("report", out)
    assert report.exit_code == 0, report.output
    sheet = pd.read_csv(out / "report" / "figures" / "sheet_latin.csv")
    assert first.stem not in set(sheet["image_id"]) and len(sheet) == 5


def _damage(folder: Path, how: str) -> None:
    if how == "garbage parquet":
        (folder / "units.parquet").write_bytes(b"PAR1 this is not parquet")
    elif how == "broken run.json":
        (folder / "run.json").write_text('{"model": "tiny_te')
    elif how == "d as strings":
        table = pd.read_parquet(folder / "units.parquet")
        table.assign(d=table["d"].astype(str)).to_parquet(folder / "units.parquet")
    elif how == "zero rows":
        table = pd.read_parquet(folder / "units.parquet")
        table.iloc[:0].to_parquet(folder / "units.parquet")


@pytest.mark.parametrize("how", ["garbage parquet", "broken run.json", "d as strings", "zero rows"])
def test_damaged_outputs_give_one_clear_line(finished, tmp_path, how):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    _damage(out, how)
    report = _run("report", out)
    assert report.exit_code == 1, report.output
    lines = [line for line in report.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "rerun" in lines[0]


def test_an_unwritable_out_fails_before_any_work(images, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    base = ["audit", "--images", images, "--model", "tiny_imagenet_net", "--cache", cache, *QUICK]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, message in ((a_file, "is a file"), (a_file / "sub", "is a file")):
        result = _run(*base, "--out", out)
        assert result.exit_code == 1 and message in result.output
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_access = runfolder.os.access  # we run as root: the folder is read-only to os.access
    with monkeypatch.context() as m:
        m.setattr(
            runfolder.os, "access", lambda p, mode: Path(p) != read_only and real_access(p, mode)
        )
        result = _run(*base, "--out", read_only / "run")
    assert result.exit_code == 1 and "not writable" in result.output
    mit = ["mitigate", "--images", images, "--downstream", images, "--out", a_file, *QUICK]
    result = _run(*mit)
    assert result.exit_code == 1 and "is a file" in result.output
    assert not cache.exists()  # no work was done


def test_a_full_disk_at_the_end_keeps_the_cache(images, tmp_path, monkeypatch):
    out, cache = tmp_path / "run", tmp_path / "cache"
    argv = ["audit", "--images", images, "--out", out, "--model", "counting_net"]
    argv += ["--scenarios", "latin", "--cache", cache, *QUICK]
    real_write = runfolder.atomic_write

    def full(path, data):
        if Path(path).name == "counts.csv":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(runfolder, "atomic_write", full)
    start = counting.FRAMES["n"]
    result = _run(*argv)
    assert result.exit_code == 1
    assert "No space left on device" in result.output and "the cache" in result.output
    assert not (out / "run.json").exists()
    computed = counting.FRAMES["n"] - start
    assert computed > 0
    monkeypatch.setattr(runfolder, "atomic_write", real_write)
    again = _run(*argv)
    assert again.exit_code == 0, again.output
    assert counting.FRAMES["n"] - start == computed  # the rerun computed no activation
    assert runfolder.is_finished(out)


def test_a_mitigation_folder_written_before_run_json_had_a_kind_is_one(tmp_path):
    (tmp_path / "table.csv").write_text("fraction,accuracy\n0,0.9\n")
    (tmp_path / "run.json").write_text(json.dumps({"model": "m"}))
    assert runfolder.kind_of(tmp_path) == "mitigation"
    (tmp_path / "table.csv").unlink()
    assert runfolder.kind_of(tmp_path) == "unfinished"

import json
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.study_helpers import labelled_images, small_study
from wmprobe.cli import main
from wmprobe.errors import ImageFolderError, WmprobeError
from wmprobe.study.reproduce import PAPER_MODELS, STUDY_PRESETS, mitigation_step, reproduce


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return labelled_images(tmp_path_factory.mktemp("labelled"))


@pytest.fixture(scope="module")
def study(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return small_study(images, out, command="wmprobe reproduce (test)")


def test_paper_preset_lists_the_papers_twenty_models():
    assert len(PAPER_MODELS) == 20 == len(set(PAPER_MODELS))
    assert STUDY_PRESETS["paper"].scenarios == ("chinese", "latin", "hindi", "numerals")
    assert {"vit_base_patch16_224", "beit_base_patch16_224", "alexnet"} <= set(PAPER_MODELS)


@pytest.mark.slow
def test_study_audits_skips_unknown_models_and_reports(study):
    statuses = {m: s.status for m, s in study.statuses.items()}
    assert statuses == {
        "tiny_imagenet_net": "audited",
        "no_such_net": "skipped",
        "tiny_test_net_b": "audited",
    }
    assert "UnknownModelError" in study.statuses["no_such_net"].reason
    manifest = json.loads((study.out / "study.json").read_text())
    assert manifest["command"] == "wmprobe reproduce (test)" and manifest["seed"] == 0
    assert manifest["statuses"]["no_such_net"]["status"] == "skipped"
    assert {"torch", "numpy", "matplotlib", "wmprobe"} <= set(manifest["versions"])
    assert manifest["mitigation"] == {"status": "skipped", "reason": "--downstream not given"}
    assert manifest["scenarios"] == ["chinese", "numerals"]
    for scenario in ("chinese", "numerals"):
        assert (study.out / "sheets" / f"{scenario}.png").stat().st_size > 1000
    run = study.out / "models" / "tiny_imagenet_net"
    for name in ("units.parquet", "accuracy.csv", "predictions.parquet", "top_images.parquet"):
        assert (run / name).is_file(), name
    html = study.report_html.read_text()
    assert "no_such_net" in html and "Unknown model" in html


@pytest.mark.slow
def test_a_finished_model_is_not_audited_again(study, images):
    run_json = study.out / "models" / "tiny_imagenet_net" / "run.json"
    before = run_json.stat().st_mtime_ns
    again = small_study(images, study.out, models=["tiny_imagenet_net"], report=False)
    assert again.statuses["tiny_imagenet_net"].status == "resumed"
    assert run_json.stat().st_mtime_ns == before


@pytest.mark.slow
def test_changed_settings_mean_a_fresh_audit(study, images, tmp_path):
    out = tmp_path / "s"
    first = small_study(images, out, models=["tiny_test_net"], limit=4, report=False)
    assert first.report_html is None and not (out / "report").exists()
    assert first.statuses["tiny_test_net"].status == "audited"
    second = small_study(images, out, models=["tiny_test_net"], limit=5, report=False)
    assert second.statuses["tiny_test_net"].status == "audited"
    run = json.loads((out / "models/tiny_test_net/run.json").read_text())
    assert run["images_used"] == 5
    assert "10 outputs" in run["labels_dropped"]  # its outputs are not ImageNet's classes
    assert not (out / "models/tiny_test_net/accuracy.csv").exists()


def test_no_model_audited_is_an_error(images, tmp_path):
    with pytest.raises(WmprobeError, match="None of the 2 model"):
        small_study(images, tmp_path / "s", models=["no_such_net", "nor_this_one"])
    manifest = json.loads((tmp_path / "s" / "study.json").read_text())
    assert manifest["statuses"]["nor_this_one"]["status"] == "skipped"


def test_missing_downstream_folder_fails_before_any_audit(images, tmp_path):
    with pytest.raises(ImageFolderError, match="Downstream folder"):
        small_study(images, tmp_path / "s", downstream=tmp_path / "nope")
    assert not (tmp_path / "s").exists()


def test_mitigation_hook_skips_with_a_reason_or_calls_the_step(tmp_path, monkeypatch):
    said = []
    assert mitigation_step(tmp_path, None, ["m"], said.append)["reason"] == "--downstream not given"
    monkeypatch.setitem(sys.modules, "wmprobe.mitigation", None)  # not installed
    out = mitigation_step(tmp_path, tmp_path, ["m"], said.append)
    assert out == {
        "status": "skipped",
        "reason": "wmprobe.mitigation is not part of this installation",
    }
    monkeypatch.setitem(sys.modules, "wmprobe.mitigation", types.ModuleType("wmprobe.mitigation"))
    out = mitigation_step(tmp_path, tmp_path, ["m"], said.append)
    assert out["status"] == "skipped" and "reproduce_step" in out["reason"]
    calls = []
    module = types.ModuleType("wmprobe.mitigation")
    module.reproduce_step = lambda study, downstream, models: calls.append(models) or {"acc": 0.9}
    monkeypatch.setitem(sys.modules, "wmprobe.mitigation", module)
    assert mitigation_step(tmp_path, tmp_path, ["m"], said.append) == {"status": "done", "acc": 0.9}
    assert calls == [["m"]]
    assert any("skipped" in line for line in said)


@pytest.mark.slow
def test_reproduce_and_report_commands(images, tmp_path):
    out = tmp_path / "cli"
    argv = ["reproduce", "--images", str(images), "--models", "tiny_imagenet_net,no_such_net"]
    argv += ["--limit", "6", "--out", str(out), "--workers", "0", "--quiet", "--scenarios", "latin"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    assert "no_such_net" in result.output and "skipped" in result.output
    manifest = json.loads((out / "study.json").read_text())
    assert manifest["command"].startswith("wmprobe reproduce --preset paper --images")
    assert "--limit 6" in manifest["command"]
    report = CliRunner().invoke(main, ["report", str(out), "--out", str(tmp_path / "r")])
    assert report.exit_code == 0, report.output
    html = (tmp_path / "r" / "report.html").read_text()
    assert "wmprobe report" in html and manifest["command"].split(" --")[0] in html


def test_report_of_an_empty_folder_is_a_clean_message(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert "holds no audit" in result.output and "Traceback" not in result.output


def test_audit_command_records_its_command_line(image_dir, tmp_path):
    argv = ["audit", "--images", str(image_dir), "--out", str(tmp_path), "--model"]
    argv += [
        "tiny_imagenet_net",
        "--scenarios",
        "latin",
        "--limit",
        "3",
        "--workers",
        "0",
        "--quiet",
    ]
    assert CliRunner().invoke(main, argv).exit_code == 0
    command = json.loads((tmp_path / "run.json").read_text())["command"]
    assert command.startswith("wmprobe audit --images ") and "--scenarios latin" in command
    assert "--random-weights" not in command and "--quiet" in command


@pytest.mark.slow
def test_reproduce_runs_the_mitigation_sweep_with_a_downstream_folder(
    images, tmp_path, monkeypatch
):
    monkeypatch.setenv("WMPROBE_CACHE", str(tmp_path / "cache"))
    downstream = tmp_path / "down"
    rng = np.random.default_rng(3)
    for c, colour in enumerate([(200, 40, 40), (40, 40, 200)]):
        (downstream / f"class_{c}").mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(rng.normal(colour, 50, size=(96, 96, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(downstream / f"class_{c}" / f"{i}.png")
    out = tmp_path / "study"
    reproduce(
        images,
        out,
        models=["tiny_imagenet_net"],
        scenarios=["chinese"],
        downstream=downstream,
        num_workers=0,
        progress=False,
        report=False,
    )
    manifest = json.loads((out / "study.json").read_text())
    assert manifest["mitigation"]["status"] == "done"
    rows = manifest["mitigation"]["models"]["tiny_imagenet_net"]["table"]
    assert [r["fraction"] for r in rows] == [0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.25, 0.5]
    assert (out / "mitigation" / "tiny_imagenet_net" / "table.csv").is_file()

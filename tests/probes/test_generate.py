"""Writing probe sets (images, manifest, contact sheet) and auditing ready-made probe folders."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import IMAGENET_SAMPLES, needs_imagenet_samples
from wmprobe.auditing.run import audit
from wmprobe.cli import main
from wmprobe.errors import ImageFolderError, ProbeFolderError
from wmprobe.probes.folder import FolderScenario
from wmprobe.probes.generate import generate
from wmprobe.probes.images import load_frame, scan_folder
from wmprobe.probes.manifest import read_manifest
from wmprobe.probes.scenario import resolve_scenarios


def _px(image):
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def chinese_set(image_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "chinese"
    (result,) = generate("chinese", image_dir, out, seed=3)
    return result


def test_generate_writes_probes_manifest_and_sheet(chinese_set, image_dir):
    out = chinese_set.out
    assert len(chinese_set.rows) == 12 and not chinese_set.skipped
    assert sorted(p.name for p in (out / "probes").iterdir())[0] == "img_00.png"
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[0] > 2 * 160 and sheet.size[1] > 160
    info = json.loads((out / "probe_set.json").read_text())
    assert info["spec_hash"] == resolve_scenarios(["chinese"])[0].spec_hash()
    assert info["seed"] == 3 and info["probes"] == 12
    assert info["scenario"]["artifact"]["font"] == "cjk"


def test_manifest_round_trips_and_redraws_the_same_pixels(chinese_set):
    rows = read_manifest(chinese_set.out / "manifest.jsonl")
    assert rows == chinese_set.rows
    scenario = resolve_scenarios([rows[0].scenario])[0]
    for row in rows[:4]:
        assert row.spec_hash == scenario.spec_hash() and row.stream == "chinese"
        frame = load_frame(row.source)
        drawn = scenario.draw(frame, seed=row.seed, image_id=row.image_id)
        saved = Image.open(chinese_set.out / row.probe_file)
        assert np.array_equal(_px(saved), _px(drawn.image))  # PNG is lossless
        assert (drawn.text, drawn.bbox) == (row.text, row.bbox) and len(row.text) == 7


def test_bad_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"image_id": "a"}\n')
    with pytest.raises(ProbeFolderError, match=r"manifest.jsonl:1: not a manifest row"):
        read_manifest(tmp_path / "manifest.jsonl")


def test_a_spec_file_generates_one_folder_per_scenario(image_dir, tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('[scenarios.dose]\npreset = "latin"\nopacity = [0.5, 1.0]\n')
    results = generate(str(spec), image_dir, tmp_path / "out", limit=2)
    assert [r.out.name for r in results] == ["dose@opacity=0.5", "dose@opacity=1"]
    texts = [[row.text for row in r.rows] for r in results]
    assert texts[0] == texts[1]  # one stream: the same strings at each dose


def test_folder_scenarios_pair_by_name_and_match_drawn_probes(chinese_set, image_dir, tmp_path):
    # A copy of the generated folder lacking one probe and holding one probe with no clean image.
    folder = tmp_path / "probes"
    folder.mkdir()
    for path in sorted((chinese_set.out / "probes").iterdir())[1:]:
        (folder / path.name).write_bytes(path.read_bytes())
    Image.new("RGB", (224, 224)).save(folder / "stranger.png")
    kw = dict(model="tiny_test_net", progress=False, num_workers=0, seed=3)
    result = audit(image_dir, scenarios=["chinese", f"folder:{folder}"], **kw)
    assert result.images.excluded == {"img_00": f"no probe in folder:{folder}"}
    assert result.config["probes_without_clean_image"] == {f"folder:{folder}": 1}
    acts = result.activations
    assert len(acts.image_ids) == 11
    # The folder's PNGs are exactly the drawn probes, so the model sees the same pixels.
    np.testing.assert_array_equal(
        acts.get("logits", "chinese"), acts.get("logits", f"folder:{folder}")
    )
    t = result.table.pivot_table(index=["layer", "unit"], columns="scenario", values="auc")
    np.testing.assert_array_equal(t["chinese"], t[f"folder:{folder}"])
    # A generated folder itself works too, and brings its manifest's texts.
    generated = FolderScenario.from_path(chinese_set.out)
    frame = load_frame(image_dir / "img_01.png")
    assert generated.draw(frame, seed=0, image_id="img_01").text == chinese_set.rows[1].text


def test_folder_errors(tmp_path, image_dir):
    with pytest.raises(ProbeFolderError, match="does not exist"):
        resolve_scenarios([f"folder:{tmp_path / 'nope'}"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProbeFolderError, match="holds no image files"):
        resolve_scenarios([f"folder:{tmp_path / 'empty'}"])
    twice = tmp_path / "twice"
    twice.mkdir()
    Image.new("RGB", (8, 8)).save(twice / "a.png")
    Image.new("RGB", (8, 8)).save(twice / "a.jpg")
    with pytest.raises(ProbeFolderError, match="Two files have the image id"):
        resolve_scenarios([f"folder:{twice}"])
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (8, 8)).save(other / "unrelated.png")
    with pytest.raises(ImageFolderError, match="No clean image has a partner"):
        audit(image_dir, model="tiny_test_net", scenarios=[f"folder:{other}"], progress=False)


def test_cli_generate_scenarios_and_jpeg_quality(image_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "g"
    args = ["generate", "--scenario", "latin+placebo_box", "--images", str(image_dir)]
    result = runner.invoke(main, [*args, "--out", str(out), "--limit", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "latin+placebo_box: 3 probes" in result.output
    assert len(read_manifest(out / "manifest.jsonl")) == 3
    bad = runner.invoke(
        main, ["generate", "--scenario", "latn", "--images", str(image_dir), "--out", str(out)]
    )
    assert (
        bad.exit_code == 1 and "Did you mean latin" in bad.output and "Traceback" not in bad.output
    )
    listing = runner.invoke(main, ["scenarios"])
    for name in ("null", "null+jpeg_probe", "hindi+placebo_blur", "imagenet_w", "folder:PATH"):
        assert name in listing.output
    spec = tmp_path / "s.toml"
    spec.write_text('[scenarios.url]\ntext = "x.example"\nopacity = [0.5, 1.0]\n')
    listed = runner.invoke(main, ["scenarios", "--spec", str(spec)])
    assert listed.exit_code == 0 and "url@opacity=0.5" in listed.output
    spec.write_text("[scenarios.url]\ntext = 'x'\nopacty = 1\n")
    bad_spec = runner.invoke(main, ["scenarios", "--spec", str(spec)])
    assert bad_spec.exit_code == 1 and "unknown key(s) opacty" in bad_spec.output
    run = tmp_path / "run"
    audited = runner.invoke(
        main,
        [
            "audit", "--images", str(image_dir), "--out", str(run), "--model", "tiny_test_net",
            "--scenarios", f"null,{spec.parent / 'none.toml'}", "--quiet", "--workers", "0",
        ],
    )  # fmt: skip
    assert audited.exit_code == 1 and "does not exist" in audited.output
    audited = runner.invoke(
        main,
        [
            "audit", "--images", str(image_dir), "--out", str(run), "--model", "tiny_test_net",
            "--scenarios", "null,null+jpeg_probe", "--jpeg-quality", "90", "--quiet",
            "--workers", "0", "--limit", "4",
        ],
    )  # fmt: skip
    assert audited.exit_code == 0, audited.output
    config = json.loads((run / "run.json").read_text())
    assert config["jpeg_quality"] == 90 and set(config["scenario_specs"]) == {
        "null",
        "null+jpeg_probe",
    }
    table = pd.read_parquet(run / "units.parquet")
    assert (table[table.scenario == "null"]["auc"] == 0.5).all()


@needs_imagenet_samples()
def test_generate_on_imagenet_samples(tmp_path):
    (result,) = generate("hindi", IMAGENET_SAMPLES, tmp_path, limit=3)
    assert [r.image_id for r in result.rows] == [
        r.image_id for r in scan_folder(IMAGENET_SAMPLES, limit=3).records
    ]
    assert len(result.excluded) == 2  # the two already watermarked samples, as in the paper
    assert all(r.bbox is not None for r in result.rows)

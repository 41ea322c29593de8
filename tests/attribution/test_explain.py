"""explain on a tiny model with a planted detector whose receptive field is known.

Unit 0 of ``features`` is a white-pixel detector with a 1x1 receptive field: its map is non-zero
only where R + G + B > 2.7 (of 3), which the white text reaches and the background (noise in
[0, 0.95]) almost never does. Unit 1 ignores the image: its map is a fixed smooth positive field,
the same on every image, so its attribution falls on the box only as often as chance says.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

import wmprobe
from wmprobe.attribution.maps import UnitAttributor, spatial_layer
from wmprobe.errors import InvalidArgumentError
from wmprobe.models import load_model
from wmprobe.models.registry import ModelSpec, register_model
from wmprobe.probes.images import load_frame
from wmprobe.probes.scenario import Scenario

N_IMAGES = 8

pytestmark = pytest.mark.slow  # an audit and four attribution methods: about a minute here


class Planted(nn.Module):
    def __init__(self):
        super().__init__()
        self.detect = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.detect.weight.fill_(1.0)
            self.detect.bias.fill_(-2.7)
        g = torch.Generator().manual_seed(0)
        field = torch.rand(1, 1, 28, 28, generator=g) + 0.5
        self.register_buffer("field", nn.functional.interpolate(field, size=(224, 224)))
        self.maps = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        white = torch.relu(self.detect(x))
        other = self.field.expand(x.shape[0], -1, -1, -1) + 0.0 * x[:, :1]
        return self.fc(self.pool(self.maps(torch.cat([white, other], dim=1))).flatten(1))


register_model(
    ModelSpec(
        name="planted_test_net",
        build=lambda pretrained, allow_download: Planted(),
        input_size=224,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        source="test",
    )
)


@pytest.fixture(scope="module")
def noise_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(3)
    for i in range(N_IMAGES):
        pixels = rng.integers(0, 243, size=(224, 240 + 4 * i, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"noise_{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def explained(noise_images, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    result = wmprobe.audit(
        noise_images,
        model="planted_test_net",
        scenarios=["chinese", "chinese+placebo_box"],
        layers=["features"],
        num_workers=0,
        progress=False,
        cache=tmp_path_factory.mktemp("cache"),
    )
    result.save(run)
    ex = wmprobe.explain(
        run, units="top:2", methods="gradcam,ig,lrp,activation", images=N_IMAGES, ig_steps=8
    )
    return run, ex


def test_planted_detector_is_found_and_the_blind_unit_is_at_chance(explained):
    _, ex = explained
    s = ex.units.set_index(["unit", "method"])
    for method in ("gradcam", "ig", "lrp", "activation"):
        row = s.loc[(0, method)]
        assert row["images"] == N_IMAGES
        assert row["mass"] > 0.95, method
        # rank accuracy: only the ink's whitest pixels (a fifth of the box) light up
        assert row["hit_rate"] == 1.0 and row["rank_accuracy"] > 1.5 * row["chance"], method
        assert row["clean_mass"] < 0.4, method  # the few bright background pixels, anywhere
        assert row["localized"], method
    for method in ("gradcam", "activation"):
        row = s.loc[(1, method)]
        assert abs(row["mass"] - row["chance"]) < 0.04, method
        assert abs(row["rank_accuracy"] - row["chance"]) < 0.08, method
        assert row["clean_mass"] == pytest.approx(row["mass"])  # the same map either way
        assert not row["localized"], method
    for method in ("ig", "lrp"):  # no input reaches unit 1: no relevance, no verdict
        assert np.isnan(s.loc[(1, method), "mass"]) and not s.loc[(1, method), "localized"]


def test_placebo_contrast_tells_a_white_detector_from_a_text_detector(explained):
    _, ex = explained
    row = ex.units.set_index(["unit", "method"]).loc[(0, "gradcam")]
    assert row["placebo"] == "chinese+placebo_box"
    assert row["placebo_mass"] > 0.95  # the white placebo box lights it up just as well
    assert not row["beyond_placebo"]


def test_box_is_the_drawn_box_pixel_by_pixel(explained, noise_images):
    _, ex = explained
    rows = ex.localization.drop_duplicates("image_id")
    assert len(rows) == N_IMAGES
    chinese = Scenario.preset("chinese")
    for row in rows.itertuples():
        frame = load_frame(noise_images / f"{row.image_id}.png")
        probe = chinese.draw(frame, seed=0, image_id=row.image_id).image
        changed = (np.asarray(probe).astype(int) != np.asarray(frame)).any(axis=-1)
        ys, xs = np.nonzero(changed)
        drawn = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert drawn == (row.box_left, row.box_top, row.box_right, row.box_bottom)
        area = (row.box_right - row.box_left) * (row.box_bottom - row.box_top)
        assert row.chance == pytest.approx(area / 224**2)


def test_outputs_on_disk(explained):
    run, ex = explained
    folder = run / "explain"
    table = pd.read_parquet(folder / "localization.parquet")
    for col in ("model", "layer", "scenario", "unit", "method", "image_id", "mass",
                "rank_accuracy", "hit", "chance", "clean_mass"):  # fmt: skip
        assert col in table.columns
    units = pd.read_parquet(folder / "localization_units.parquet")
    assert {"auc", "d", "audit_q", "q", "localized"} <= set(units.columns)
    assert len(units) == 2 * 4  # two units, four methods
    config = json.loads((folder / "explain.json").read_text())
    assert config["spatial_layers"] == {"features": "maps"}
    assert "SequentialMergeBatchNorm" in config["lrp_canonizers"]
    pngs = sorted(p.name for p in (folder / "overlays").glob("*.png"))
    assert "chinese__features__0__gradcam.png" in pngs and len(pngs) == 8
    assert Image.open(folder / "overlays" / pngs[0]).size[0] > 600


def test_bad_arguments(explained):
    run, _ = explained
    with pytest.raises(InvalidArgumentError, match="method"):
        wmprobe.explain(run, methods="saliency")
    with pytest.raises(InvalidArgumentError, match="audited"):
        wmprobe.explain(run, units="logits:3")


def test_spatial_layer_of_known_models():
    assert spatial_layer(load_model("planted_test_net", device="cpu"), "features") == "maps"
    lite = load_model("efficientnet_lite0", device="cpu", pretrained=False)
    assert spatial_layer(lite, "logits") == "_bn1"
    att = UnitAttributor(lite, "logits")
    assert not att.supports("activation") and att.supports("gradcam")
    assert att.canonizers.startswith("NamedMergeBatchNorm")


def test_report_shows_where_the_units_look(explained, tmp_path):
    from tests.reporting.test_report import check_figure_csvs_match_tables
    from wmprobe.reporting import build_report
    from wmprobe.reporting.browser import load_page

    run, _ = explained
    report = build_report(run)
    html = report.html.read_text()
    assert 'id="localization"' in html and "Where the units look" in html
    assert html.index('id="units"') < html.index('id="localization"')  # beside the top units
    keys = [k for k in report.figures if k.startswith("where_")]
    assert "where_planted_test_net_chinese_features_0_lrp" in keys
    assert "where_planted_test_net_chinese_features_0_lrp" in html
    only = tmp_path / "where"  # the placebo's sheet has no text, which that check refuses
    only.mkdir()
    for csv in (run / "report" / "figures").glob("where_*.csv"):
        shutil.copy(csv, only / csv.name)
    assert set(check_figure_csvs_match_tables(run, only)) == set(keys)
    if shutil.which("chromium") is None:
        pytest.skip("headless Chromium is not installed (apt-get install -y chromium)")
    page = load_page(report.html)
    assert page.console == [] and 'data-errors="0"' in page.dom
    n = html.count('<figure class="wm"')
    assert f'data-figures-loaded="{n}"' in page.dom


def test_report_says_how_to_explain_a_run_without_it(explained, tmp_path):
    from wmprobe.reporting import build_report

    run, _ = explained
    bare = tmp_path / "bare"
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("explain", "report"))
    report = build_report(bare)
    assert any("wmprobe explain" in note for note in report.notes)
    shutil.copytree(run / "explain", bare / "explain")
    assert not any("wmprobe explain" in note for note in build_report(bare).notes)
    config = json.loads((bare / "run.json").read_text())
    (bare / "run.json").write_text(json.dumps({**config, "seed": 1}))  # audited again
    report = build_report(bare)
    assert any("earlier audit" in note for note in report.notes)
    assert "where_" not in report.html.read_text()


@pytest.mark.slow
def test_reproduce_explain_runs_it_for_every_model(tmp_path, noise_images):
    from tests.study_helpers import small_study

    result = small_study(
        noise_images, tmp_path, models=["tiny_test_net"], scenarios=["chinese"], explain=True
    )
    study = json.loads((tmp_path / "study.json").read_text())
    assert study["explain"] == {"tiny_test_net": "done"}
    units = pd.read_parquet(tmp_path / "models/tiny_test_net/explain/localization_units.parquet")
    assert set(units["method"]) == {"gradcam", "activation"}
    assert "Where the units look" in result.report_html.read_text()
    assert "where_tiny_test_net" in result.report_html.read_text()

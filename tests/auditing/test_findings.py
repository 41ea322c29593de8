"""Issue 5 end to end: a planted text detector is found, gates trip, tables are complete."""

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from wmprobe.auditing.run import audit
from wmprobe.auditing.tables import audit_table
from wmprobe.cli import main
from wmprobe.extraction.activations import Activations
from wmprobe.models.registry import ModelSpec, register_model


class PlantedDetector(nn.Module):
    """Feature 0 counts pure-white pixels (the text); features 1-7 read blue minus green through
    fixed random weights, which white text (R = G = B) leaves unchanged on average."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(7, 32 * 32, generator=g))
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        white = (x.min(dim=1).values > 0.98).float().mean(dim=(1, 2)) * 100
        bg = nn.functional.adaptive_avg_pool2d(x[:, 2] - x[:, 1], 32).flatten(1)
        return self.fc(torch.cat([white[:, None], bg @ self.proj.T / 32], dim=1))


register_model(
    ModelSpec(
        name="planted_detector",
        build=lambda pretrained, allow_download: PlantedDetector(),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        source="test",
    )
)


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(1)
    for i in range(40):  # values up to 200: no pure white before the text is drawn
        Image.fromarray(rng.integers(0, 200, (224, 224, 3), dtype=np.uint8)).save(
            root / f"n{i:02d}.png"
        )
    return root


def test_the_planted_detector_is_found_and_the_others_are_not(noise_dir):
    result = audit(
        noise_dir, model="planted_detector", scenarios=["latin"], progress=False, num_workers=0
    )
    feats = result.table[result.table["layer"] == "features"].set_index("unit")
    assert feats.loc[0, "q"] < 0.05 and feats.loc[0, "d"] > 0.95
    assert (feats.loc[1:, "q"] >= 0.05).all()
    assert (feats["ci_low"] <= feats["auc"]).all() and (feats["auc"] <= feats["ci_high"]).all()
    assert feats.loc[0, "mean_diff"] > 0 and feats.loc[0, "wilcoxon_p"] < 1e-6
    assert feats.loc[0, "calibrated"] and not feats.loc[1:, "calibrated"].any()
    assert 0.5 < feats["null_threshold"].iloc[0] < 0.95


@pytest.mark.slow
def test_placebo_tells_a_white_detector_from_a_text_detector(noise_dir):
    # Unit 0 counts white pixels: the text raises it, but a white box in the text's place raises
    # it further, so it is a detector of white occlusion, not of writing.
    result = audit(
        noise_dir,
        model="planted_detector",
        scenarios=["latin", "latin+placebo_box", "latin+placebo_noise"],
        progress=False,
        num_workers=0,
    )
    t = result.table
    unit0 = t[(t.layer == "features") & (t.unit == 0) & (t.scenario == "latin")].iloc[0]
    assert unit0["q"] < 0.05 and unit0["placebo_d"] < 0.5
    assert not unit0["text_detector"]
    assert t[t.scenario == "latin+placebo_box"]["text_detector"].isna().all()
    # Against a blur of the same box alone (no white added), the text moves it further.
    blur = audit(
        noise_dir,
        model="planted_detector",
        scenarios=["latin", "latin+placebo_blur"],
        progress=False,
        num_workers=0,
    ).table
    unit0 = blur[(blur.layer == "features") & (blur.unit == 0) & (blur.scenario == "latin")]
    assert unit0["text_detector"].iloc[0] and unit0["placebo_d"].iloc[0] > 0.95


def test_fail_if_gate_trips_with_status_3(noise_dir, tmp_path):
    base = [
        "audit",
        "--images",
        str(noise_dir),
        "--model",
        "planted_detector",
        "--scenarios",
        "latin",
        "--workers",
        "0",
        "--quiet",
    ]
    tripped = CliRunner().invoke(
        main, [*base, "--out", str(tmp_path / "a"), "--fail-if", "features:d>0.9:count>0"]
    )
    assert tripped.exit_code == 3, tripped.output
    assert "TRIPPED" in tripped.output
    fine = CliRunner().invoke(
        main, [*base, "--out", str(tmp_path / "b"), "--fail-if", "features:d>0.9:count>1"]
    )
    assert fine.exit_code == 0, fine.output
    bad = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "c"), "--fail-if", "nonsense"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output  # a usage error
    assert not (tmp_path / "c").exists()  # bad syntax fails before any work


def test_output_tables_are_written(image_dir, tmp_path):
    result = audit(
        image_dir,
        model="tiny_test_net",
        scenarios=["chinese", "latin"],
        progress=False,
        num_workers=0,
    )
    paths = result.save(tmp_path)
    outputs = pd.read_csv(paths["outputs.csv"])
    assert list(outputs["scenario"]) == ["chinese", "latin"]
    assert outputs["acc_clean"].isna().all()  # synthetic images have no labels
    classes = pd.read_parquet(paths["classes.parquet"])
    assert (
        len(classes) == 2 * 10 and np.isclose(classes.groupby("scenario")["delta_p"].sum(), 0).all()
    )
    stability = pd.read_csv(paths["stability.csv"])
    assert {"(random half)", "latin"} <= set(stability["b"])
    assert stability["jaccard"].between(0, 1).all()


def test_nothing_is_calibrated_when_both_sides_are_identical():
    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(size=(998, 1, 300)), 0).astype(np.float32)
    acts = Activations(
        model="m",
        image_ids=[str(i) for i in range(998)],
        labels=np.full(998, -1),
        variants=("clean", "null"),
        values={"features": np.concatenate([x, x], axis=1)},
    )
    t = audit_table(acts, [])
    assert (t["d"] - 0.5).abs().max() < 1e-12
    assert not t["calibrated"].any()

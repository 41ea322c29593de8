import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import IMAGENET_SAMPLES, needs_imagenet_samples
from wmprobe.auditing.run import audit
from wmprobe.auditing.tables import TABLE_COLUMNS
from wmprobe.errors import ImageFolderError, UnknownScenarioError


def test_audit_on_synthetic_images_with_a_tiny_model(image_dir):
    result = audit(
        image_dir,
        model="tiny_test_net",
        scenarios=["chinese", "latin"],
        progress=False,
        num_workers=0,
    )
    t = result.table
    assert list(t.columns) == TABLE_COLUMNS
    assert len(t) == 2 * (10 + 8)  # two scenarios x (10 logits + 8 features)
    assert t["auc"].between(0, 1).all()
    np.testing.assert_allclose(t["d"], np.maximum(t["auc"], 1 - t["auc"]))
    counts = result.counts()
    assert set(counts.columns) >= {"scenario", "layer", "units", "d>0.7", "d>0.95"}
    assert len(result.activations.image_ids) == 12


def test_audit_is_deterministic(image_dir):
    kw = dict(model="tiny_test_net", scenarios=["hindi"], progress=False, num_workers=0, seed=5)
    a, b = audit(image_dir, **kw), audit(image_dir, **kw)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.activations.texts == b.activations.texts


def test_unreadable_images_are_counted_skips(tmp_path, image_dir):
    for p in sorted(image_dir.iterdir())[:4]:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    result = audit(
        tmp_path, model="tiny_test_net", scenarios=["latin"], progress=False, num_workers=0
    )
    assert set(result.activations.skipped) == {"broken", "empty"}
    assert len(result.activations.image_ids) == 4
    assert "skipped 2 unreadable" in result.summary()


def test_nothing_readable_is_an_error(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"nope")
    with pytest.raises(ImageFolderError, match="None of the 1 images"):
        audit(tmp_path, model="tiny_test_net", scenarios=["latin"], progress=False, num_workers=0)


def test_unknown_scenario_fails_before_any_work(image_dir):
    with pytest.raises(UnknownScenarioError):
        audit(image_dir, model="no_such_model", scenarios=["latin", "elvish"], progress=False)


def test_a_planted_text_detector_is_found(image_dir):
    # Brightness of the image is a crude text detector for white text on random noise.
    result = audit(
        image_dir, model="tiny_test_net", scenarios=["chinese"], progress=False, num_workers=0
    )
    clean = result.activations.get("features", "clean")
    probe = result.activations.get("features", "chinese")
    assert clean.shape == probe.shape == (12, 8)
    # Every image's probe differs from its clean frame somewhere.
    assert (np.abs(probe - clean).max(axis=1) > 0).all()


@needs_imagenet_samples()
@pytest.mark.slow
def test_efficientnet_lite0_on_imagenet_samples(tmp_path):
    result = audit(IMAGENET_SAMPLES, limit=24, progress=False, scenarios=["chinese", "numerals"])
    paths = result.save(tmp_path)
    table = pd.read_parquet(paths["units.parquet"])
    assert len(table) == 2 * (1000 + 1280)
    assert set(table["scenario"]) == {"chinese", "numerals"}
    assert (pd.read_csv(paths["units.csv"])["auc"].to_numpy() == table["auc"].to_numpy()).all()
    acc = result.accuracy()
    assert acc is not None and acc.set_index("variant").loc["clean", "top1"] > 0.6
    assert len(result.images.excluded) == 2
    logits = table[table.layer == "logits"]
    assert logits["class_name"].iloc[0] == "tench"
    Image.open(IMAGENET_SAMPLES / "n01440764_tench.JPEG").verify()

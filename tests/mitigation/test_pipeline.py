"""Mitigation end to end: features, cache, the mitigate run, export, CLI, Caltech-256 download."""

import json
import os
import socket

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tests.conftest import CALTECH101, IMAGENET_SAMPLES, needs_caltech101, needs_imagenet_samples
from wmprobe.cli import main
from wmprobe.errors import DatasetDownloadError, ImageFolderError, MitigationError
from wmprobe.mitigation import (
    downstream_features,
    load_mitigated,
    mitigate,
    resolve_downstream,
    scan_image_folder,
)
from wmprobe.models import load_model
from wmprobe.probes.images import load_frame

TINY = dict(model="tiny_test_net", num_workers=0, progress=False)


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory):
    """An ImageFolder of 3 classes x 10 images; each class has its own colour, plus noise."""
    root = tmp_path_factory.mktemp("downstream")
    rng = np.random.default_rng(1)
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
    for c, colour in enumerate(colours):
        (root / f"class_{c}").mkdir()
        for i in range(10):
            pixels = np.clip(rng.normal(colour, 60, size=(120, 160, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class_{c}" / f"{i}.png")
    return root


def accuracy_of_export(out, folder) -> float:
    """The exported model's accuracy on the test images named in split.json (one batch)."""
    model = load_mitigated(out / "mitigated")
    split = json.loads((out / "split.json").read_text())
    classes = model.config["classes"]
    frames, truth = [], []
    for image_id in split["test"]:
        folder_of, stem = (folder / image_id).parent, image_id.split("/")[-1]
        (path,) = [p for p in folder_of.iterdir() if p.stem == stem]
        frames.append(torch.from_numpy(np.array(load_frame(path))).permute(2, 0, 1))
        truth.append(classes.index(image_id.split("/")[0]))
    with torch.no_grad():
        pred = model(torch.stack(frames)).argmax(1)
    return (pred == torch.tensor(truth)).float().mean().item()


def test_mitigate_run_and_its_export_reproduce_the_table(image_dir, folder_dataset, tmp_path):
    run = mitigate(
        image_dir,
        folder_dataset,
        scenarios=["chinese"],
        fractions=[0, 0.25, 0.5],
        export_fraction=0.25,
        C=1.0,
        cache_dir=tmp_path / "cache",
        **TINY,
    )
    out = tmp_path / "run"
    paths = run.save(out)
    table = pd.read_csv(out / "table.csv")
    assert table["fraction"].tolist() == [0, 0.25, 0.5]
    assert table["left_out"].tolist() == [0, 2, 4]  # of the tiny net's 8 feature units
    for name in ("fraction_curves", "auc_distribution"):
        assert all((out / f"{name}.{ext}").stat().st_size > 0 for ext in ("png", "svg", "csv"))
    assert "mitigated" in paths and (out / "summary.txt").read_text().startswith("wmprobe mitigate")
    # The exported head leaves out the two top-ranked units, and nothing else.
    ranks = pd.read_csv(out / "feature_units.csv").set_index("unit")["rank"]
    state = torch.load(out / "mitigated" / "model.pt", weights_only=True)
    assert sorted(state["head.kept"].tolist()) == sorted(ranks[ranks >= 2].index.tolist())
    # Its accuracy on the test images, from the image files, is the table's.
    row = table.set_index("fraction").loc[0.25]
    config = json.loads((out / "mitigated" / "config.json").read_text())
    assert config["test_accuracy"] == pytest.approx(row["accuracy"])
    assert accuracy_of_export(out, folder_dataset) == pytest.approx(row["accuracy"])
    assert row["accuracy"] > 0.5  # colours tell the classes apart (chance is 1/3)


def test_left_out_units_do_not_reach_the_exported_model(image_dir, folder_dataset, tmp_path):
    run = mitigate(
        image_dir, folder_dataset, fractions=[0, 0.5], export_fraction=0.5, C=1.0,
        cache_dir=tmp_path / "cache", **TINY,
    )  # fmt: skip
    run.save(tmp_path / "run")
    model = load_mitigated(tmp_path / "run" / "mitigated")
    frames = torch.randint(0, 256, (4, 3, 224, 224), dtype=torch.uint8)
    with torch.no_grad():
        feats = model.features(frames)
        left_out = ~model.head.mask
        assert left_out.sum().item() == 4
        noisy = feats.clone()
        noisy[:, left_out] = torch.randn(4, int(left_out.sum())) * 1e6
        assert torch.equal(model.head(feats), model.head(noisy))
        assert torch.equal(model(frames), model.head(feats))


def test_downstream_features_are_cached_by_folder_contents(folder_dataset, tmp_path):
    model = load_model("tiny_test_net", device="cpu")
    kw = dict(scenarios=["latin"], cache_dir=tmp_path, num_workers=0, progress=False)
    first = downstream_features(model, folder_dataset, **kw)
    again = downstream_features(model, folder_dataset, **kw)
    assert not first.manifest["cached"] and again.manifest["cached"]
    assert first.manifest["frames_computed"] == 60 and again.manifest["frames_computed"] == 0
    np.testing.assert_array_equal(first.clean, again.clean)
    assert first.clean.shape == (30, 8) and first.probes["latin"].shape == (30, 8)
    assert first.classes == ("class_0", "class_1", "class_2")
    path = folder_dataset / "class_0" / "0.png"
    stat, original = path.stat(), path.read_bytes()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes
    try:
        assert downstream_features(model, folder_dataset, **kw).manifest["cached"]
        pixels = np.array(Image.open(path))
        pixels[0, 0] ^= 0xFF
        Image.fromarray(pixels).save(path)  # new bytes
        changed = downstream_features(model, folder_dataset, **kw)
        assert not changed.manifest["cached"] and changed.manifest["frames_computed"] == 60
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_mitigate_reads_the_probe_features_an_audit_cached(image_dir, folder_dataset, tmp_path):
    from wmprobe.auditing.run import audit

    audit(image_dir, model="tiny_test_net", scenarios=["chinese"], layers=["features"],
          cache=tmp_path / "cache", num_workers=0, progress=False)  # fmt: skip
    run = mitigate(image_dir, folder_dataset, scenarios=["chinese"], fractions=[0, 0.5], C=1.0,
                   cache_dir=tmp_path / "cache", **TINY)  # fmt: skip
    assert run.timings["probe_set_features"] == 0.0  # nothing computed: the audit's entries


@pytest.mark.slow
def test_paper_training_option_trains_every_fraction(image_dir, folder_dataset, tmp_path):
    run = mitigate(
        image_dir, folder_dataset, fractions=[0, 0.5], C=1.0, training="paper", epochs=2,
        lr=0.5, cache_dir=tmp_path / "cache", **TINY,
    )  # fmt: skip
    heads = run.sweep.heads
    assert len(heads[0].kept) == 8 and len(heads[0.5].kept) == 4
    assert heads[0].n_iter == 2 * 1  # 2 epochs x 1 batch of 24 training images
    assert np.abs(heads[0].weight).sum() > 0  # SGD moved the zero-initialised head
    assert run.config["training"] == "paper"
    assert run.table()["accuracy"].between(0, 1).all()


def test_bad_requests_are_clear_errors(image_dir, folder_dataset, tmp_path):
    kw = dict(cache_dir=tmp_path, **TINY)
    with pytest.raises(MitigationError, match="export fraction 0.3"):
        mitigate(image_dir, folder_dataset, fractions=[0, 0.5], export_fraction=0.3, **kw)
    with pytest.raises(MitigationError, match="null scenario"):
        mitigate(image_dir, folder_dataset, ranking="null", **kw)
    with pytest.raises(ImageFolderError, match="no class sub-folders"):
        mitigate(image_dir, image_dir, **kw)
    empty = tmp_path / "empty_class_set"
    (empty / "a").mkdir(parents=True)
    with pytest.raises(ImageFolderError, match="without images: a"):
        scan_image_folder(empty)


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connecting is refused


@pytest.fixture
def offline_caltech(monkeypatch):
    """torchvision's Caltech-256 download pointed at a local port that refuses connections."""
    import torchvision.datasets.caltech as caltech

    real = caltech.download_and_extract_archive
    url = f"http://127.0.0.1:{_refused_port()}/256_ObjectCategories.tar"
    calls = []

    def redirected(_url, *args, **kwargs):
        calls.append(_url)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(caltech, "download_and_extract_archive", redirected)
    return calls


def test_caltech256_download_failure_is_a_clear_error(offline_caltech, tmp_path):
    with pytest.raises(DatasetDownloadError, match="Could not download Caltech-256") as info:
        resolve_downstream("caltech256", data_dir=tmp_path, download=True)
    assert "refused" in str(info.value).lower() and "--downstream" in str(info.value)
    assert offline_caltech == [
        "https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar"
    ]
    with pytest.raises(ImageFolderError, match="--download"):
        resolve_downstream("caltech256", data_dir=tmp_path, download=False)


def test_cli_caltech256_without_network_gives_one_line(offline_caltech, image_dir, tmp_path):
    argv = ["mitigate", "--model", "tiny_test_net", "--images", str(image_dir), "--downstream"]
    argv += ["caltech256", "--download", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 1
    assert "Could not download Caltech-256" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_cli_mitigate_writes_the_run(image_dir, folder_dataset, tmp_path):
    out = tmp_path / "run"
    argv = ["mitigate", "--model", "tiny_test_net", "--images", str(image_dir), "--downstream"]
    argv += [str(folder_dataset), "--out", str(out), "--fractions", "0,0.25", "--random-draws"]
    argv += ["2", "--seeds", "0,1", "--cache", str(tmp_path / "c"), "--workers", "0", "--quiet"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    assert "random_accuracy" in result.output and "exported" in result.output
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 2 * 2 * (1 + 2)  # fractions x seeds x (sensitive + 2 random draws)
    bad = CliRunner().invoke(main, argv[:-1] + ["--quiet", "--rank-by", "null"])
    assert bad.exit_code == 1 and "null scenario" in bad.output and "Traceback" not in bad.output


@needs_imagenet_samples()
@needs_caltech101()
@pytest.mark.slow
def test_real_export_reproduces_the_table_on_a_caltech101_subset(tmp_path):
    folder = tmp_path / "caltech-subset"  # symbolic links to 4 classes x 5 images
    for name in ("Leopards", "Motorbikes", "accordion", "airplanes"):
        (folder / name).mkdir(parents=True)
        for p in sorted((CALTECH101 / name).iterdir())[:5]:
            (folder / name / p.name).symlink_to(p)
    run = mitigate(
        IMAGENET_SAMPLES, folder, model="efficientnet_lite0", device="cpu", limit=12,
        fractions=[0, 0.1], export_fraction=0.1, cache_dir=tmp_path / "cache", progress=False,
    )  # fmt: skip
    out = tmp_path / "run"
    run.save(out)
    row = pd.read_csv(out / "table.csv").set_index("fraction").loc[0.1]
    assert row["left_out"] == 128 and row["accuracy"] >= 0.75
    assert accuracy_of_export(out, folder) == pytest.approx(row["accuracy"])


def test_mitigate_takes_a_config_and_refuses_unknown_options(image_dir, folder_dataset):
    from wmprobe.errors import InvalidArgumentError
    from wmprobe.mitigation.pipeline import MitigationConfig

    config = MitigationConfig(model="tiny_test_net", fractions=(0, 0.5))
    assert config.replace(ranking="max").ranking == "max" and config.ranking == "d"
    with pytest.raises(InvalidArgumentError, match="colour"):
        mitigate(image_dir, folder_dataset, config, colour="red")

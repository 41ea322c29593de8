"""Weights files on disk are verified before use; a wrong or truncated file is a clear error."""

from __future__ import annotations

import hashlib

import pytest
import torch
from click.testing import CliRunner

import wmprobe.models.weights_files as wf
from wmprobe.cli import main
from wmprobe.errors import WeightsUnavailableError
from wmprobe.models import efficientnet_lite, get_model_spec, load_model
from wmprobe.models.torchvision_models import weights_path


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """torch's hub cache in a temporary folder; the verified-files memo forgotten."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setattr(wf, "_verified", {})
    monkeypatch.setenv("WMPROBE_CACHE", str(tmp_path / "cache"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def test_a_wrong_torchvision_file_is_refused_and_not_offline_ready(hub_dir):
    path = weights_path("resnet18")  # resnet18-f37072fd.pth
    path.parent.mkdir(parents=True)
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)  # a valid file, the wrong one
    with pytest.raises(
        WeightsUnavailableError, match=r"resnet18-f37072fd\.pth.*--download-weights"
    ):
        load_model("resnet18", device="cpu")
    assert not get_model_spec("resnet18").weights_available()
    listing = CliRunner().invoke(main, ["models"])
    line = next(x for x in listing.output.splitlines() if x.split()[:1] == ["resnet18"])
    assert "offline-ready" not in line


def test_a_truncated_torchvision_file_is_a_clear_error(hub_dir, image_dir):
    path = weights_path("alexnet")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 truncated")
    res = CliRunner().invoke(
        main,
        ["audit", "--images", str(image_dir), "--out", str(hub_dir / "o"), "--model", "alexnet"],
    )
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "not the expected one" in res.output and path.name in res.output


def test_a_file_whose_hash_matches_its_name_is_used_and_hashed_once(hub_dir, tmp_path, monkeypatch):
    body = tmp_path / "body.pth"
    torch.save({"w": torch.ones(3)}, body)
    sha = hashlib.sha256(body.read_bytes()).hexdigest()
    named = tmp_path / f"thing-{sha[:8]}.pth"
    body.rename(named)
    assert wf.hash_in_name(named) == sha[:8]
    calls = []
    real = wf.file_digest
    monkeypatch.setattr(wf, "file_digest", lambda *a: calls.append(1) or real(*a))
    wf.verify_weights_file(named, sha[:8], what="w", fix="")
    wf.verify_weights_file(named, sha[:8], what="w", fix="")
    monkeypatch.setattr(wf, "_verified", {})  # a new process: the memo file answers
    wf.verify_weights_file(named, sha[:8], what="w", fix="")
    assert len(calls) == 1
    named.write_bytes(named.read_bytes() + b"x")  # size and mtime change: hashed again
    with pytest.raises(WeightsUnavailableError, match="not the expected one"):
        wf.verify_weights_file(named, sha[:8], what="w", fix="Do this.")
    assert len(calls) == 2


def test_a_damaged_efficientnet_lite_file_is_refused(tmp_path, monkeypatch):
    good = efficientnet_lite.weights_file("efficientnet_lite0")
    bad = tmp_path / good.name
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    monkeypatch.setattr(efficientnet_lite, "weights_file", lambda name: bad)
    monkeypatch.setattr(wf, "_verified", {})
    assert not get_model_spec("efficientnet_lite0").weights_available()
    with pytest.raises(WeightsUnavailableError, match=r"not the expected one.*force-reinstall"):
        load_model("efficientnet_lite0", device="cpu")


def test_the_installed_efficientnet_lite_files_verify():
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        assert get_model_spec(name).weights_available()

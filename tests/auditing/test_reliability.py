"""Issue 8: no network unless asked, determinism across processes, clear messages."""

import json
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from wmprobe.auditing.run import audit
from wmprobe.cli import main
from wmprobe.errors import FontUnavailableError
from wmprobe.probes.artifacts import fonts


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network use: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.slow
def test_audits_never_touch_the_network(no_network, image_dir):
    for model, pretrained in (("efficientnet_lite0", True), ("resnet18", False)):
        result = audit(
            image_dir,
            model=model,
            pretrained=pretrained,
            scenarios=["numerals"],
            limit=2,
            progress=False,
            num_workers=0,
        )
        assert len(result.activations.image_ids) == 2


def test_missing_weights_do_not_download_without_asking(
    no_network, image_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    res = CliRunner().invoke(
        main,
        [
            "audit",
            "--images",
            str(image_dir),
            "--out",
            str(tmp_path / "o"),
            "--model",
            "alexnet",
            "--quiet",
        ],
    )
    assert res.exit_code == 1 and "--download-weights" in res.output


@pytest.mark.slow
def test_tables_figure_data_and_probes_are_identical_across_processes(image_dir, tmp_path):
    """Two processes (different hash seeds and worker counts): the same tables, figure CSVs and
    probe image bytes."""
    code = (
        f"import sys; sys.path[:0] = {[os.getcwd()]!r}; import tests.conftest; "
        "from wmprobe.cli import main; main()"
    )

    def wmprobe(i, *args):
        env = {**os.environ, "PYTHONHASHSEED": str(i + 1)}
        subprocess.run(
            [sys.executable, "-c", code, *map(str, args)],
            check=True, capture_output=True, cwd=os.getcwd(), env=env,
        )  # fmt: skip

    outs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        wmprobe(
            i, "audit", "--images", image_dir, "--out", out, "--model", "tiny_test_net",
            "--scenarios", "chinese,hindi", "--seed", 7, "--workers", i, "--quiet",
        )  # fmt: skip
        wmprobe(i, "report", out)
        wmprobe(
            i, "generate", "--scenario", "hindi", "--images", image_dir, "--out",
            tmp_path / f"probes{i}", "--seed", 7, "--quiet",
        )  # fmt: skip
        outs.append(out)
    a, b = (pd.read_parquet(o / "units.parquet") for o in outs)
    pd.testing.assert_frame_equal(a, b)
    for name in ("counts.csv", "stability.csv", "outputs.csv"):
        assert (outs[0] / name).read_text() == (outs[1] / name).read_text()
    runs = [json.loads((o / "run.json").read_text()) for o in outs]
    assert runs[0]["scenario_specs"] == runs[1]["scenario_specs"]
    figure_data = [sorted((o / "report" / "figures").glob("*.csv")) for o in outs]
    assert len(figure_data[0]) >= 3
    assert [p.name for p in figure_data[0]] == [p.name for p in figure_data[1]]
    for x, y in zip(*figure_data, strict=True):
        assert x.read_bytes() == y.read_bytes(), x.name
    probes = [sorted((tmp_path / f"probes{i}" / "probes").rglob("*.png")) for i in range(2)]
    assert len(probes[0]) == 12
    for x, y in zip(*probes, strict=True):
        assert x.read_bytes() == y.read_bytes(), x.name
    manifests = [(tmp_path / f"probes{i}" / "manifest.jsonl").read_text() for i in range(2)]
    assert manifests[0] == manifests[1]


def test_a_missing_font_fails_before_any_work(image_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "fontpkg_noto_sans_devanagari", None)  # import fails
    fonts.load_font.cache_clear()
    try:
        with pytest.raises(FontUnavailableError, match="pip install fontpkg-noto-sans-devanagari"):
            audit(image_dir, model="no_such_model", scenarios=["hindi"], progress=False)
    finally:
        fonts.load_font.cache_clear()

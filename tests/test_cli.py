import json

import pandas as pd
import pytest
from click.testing import CliRunner

from wmprobe.cli import main


def _commands():
    return sorted(main.commands)


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_with_an_example(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "wmprobe" in result.output


def test_audit_command_writes_tables(image_dir, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "audit",
            "--images",
            str(image_dir),
            "--out",
            str(out),
            "--model",
            "tiny_test_net",
            "--scenarios",
            "chinese,numerals",
            "--workers",
            "0",
            "--quiet",
            "--limit",
            "6",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "units with d above each threshold" in result.output
    table = pd.read_parquet(out / "units.parquet")
    assert len(table) == 2 * 18
    run = json.loads((out / "run.json").read_text())
    assert run["images_used"] == 6 and run["seed"] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet5O"], "Did you mean resnet50"),
        (["--scenarios", "elvish"], "Unknown scenario 'elvish'"),
        (["--images", "/nonexistent/folder"], "does not exist"),
    ],
)
def test_bad_input_gives_a_clean_message(image_dir, tmp_path, args, message):
    base = {"--images": str(image_dir), "--out": str(tmp_path / "o"), "--model": "tiny_test_net"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["audit", "--quiet"] + [x for kv in base.items() for x in kv]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_models_and_scenarios_lists():
    runner = CliRunner()
    models = runner.invoke(main, ["models", "--pattern", "efficientnet_lite0"])
    assert models.exit_code == 0 and "offline-ready" in models.output
    scenarios = runner.invoke(main, ["scenarios"])
    assert "的一是不了在人有我他这个们中来上大为和国" in scenarios.output


def test_paper20_without_weights_says_which_before_any_work(image_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    argv = ["audit", "--images", str(image_dir), "--out", str(tmp_path / "o"), "--quiet"]
    result = CliRunner().invoke(main, [*argv, "--model", "paper20"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "not available offline for 20 of the 20 models" in result.output
    assert "resnet101" in result.output and "--download-weights" in result.output

"""Every command turns a bad argument into a one-line message and exit status 1, no traceback
(a ``--fail-if`` gate that cannot be used: status 2, so that CI tells it from a tripped gate).

A new command needs a row in BAD_ARGUMENTS (or a reason in TAKES_NO_BAD_ARGUMENT):
test_every_command_has_a_bad_argument_case says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from wmprobe.cli import main

TINY = ["--model", "tiny_test_net"]
MITIGATE = ["mitigate", "--images", "{images}", "--downstream", "{down}", "--out", "{out}", *TINY]

#: (command line, a phrase the one-line message must hold[, exit status if not 1]); {images},
#: {down}, {out}, {tmp} are filled in with an image folder, a downstream ImageFolder, a fresh
#: output folder and tmp_path.
BAD_ARGUMENTS: dict[str, list[tuple]] = {
    "audit": [
        (["audit", "--images", "{images}", "--out", "{out}", "--model", "resnet5O"], "resnet50"),
        (["audit", "--images", "{images}", "--out", "{out}", *TINY, "--layers", "nosuch"],
         "Unknown layer 'nosuch'"),
        (["audit", "--images", "{images}", "--out", "{out}", *TINY, "--fail-if", "d>>1"],
         "Cannot parse gate", 2),
        (["audit", "--images", "{images}", "--out", "{out}", *TINY, "--device", "tpu"],
         "Unknown device 'tpu'"),
    ],
    "report": [(["report", "{tmp}/nothing"], "does not exist")],
    "explain": [
        (["explain", "{tmp}/nothing"], "not a complete audit run folder"),
        (["explain", "{tmp}/nothing", "--method", "saliency"], "`method`"),
        (["explain", "{tmp}/nothing", "--units", "top:x"], "`units`"),
    ],
    "reproduce": [
        (["reproduce", "--preset", "nope", "--images", "{images}", "--out", "{out}"],
         "Unknown preset 'nope'"),
    ],
    "layers": [(["layers", "--model", "resnet5O"], "Did you mean resnet50")],
    "download": [
        (["download", "caltech256", "--dest", "{tmp}/dl", "--url", "file:///nonexistent/x.tar",
          "--sha256", "0" * 64], "Could not download"),
    ],
    "scenarios": [(["scenarios", "--spec", "{tmp}/nope.toml"], "does not exist")],
    "generate": [
        (["generate", "--scenario", "elvish", "--images", "{images}", "--out", "{out}"],
         "Unknown scenario 'elvish'"),
    ],
    "mitigate": [
        ([*MITIGATE, "--fractions", "0,1.5"], "in [0, 1)"),
        ([*MITIGATE, "--rank-by", "null"], "needs a null scenario"),
        ([*MITIGATE, "--export-fraction", "0.7"], "export fraction 0.7"),
        ([*MITIGATE, "--paper-training", "--lr", "-1"], "`lr` > 0"),
        ([*MITIGATE, "--test-fraction", "1.5", "--limit", "4"], "`test_fraction`"),
    ],
    "scan": [
        (["scan", "--images", "{tmp}/nothing", "--out", "{out}"], "does not exist"),
        (["scan", "--images", "{images}", "--out", "{out}", "--labels", "{tmp}/no.csv"],
         "no.csv"),
    ],
    "detector": [
        (["detector", "train", "--images", "{tmp}/nothing", "--out", "{tmp}/d.pt"],
         "does not exist"),
    ],
}  # fmt: skip

TAKES_NO_BAD_ARGUMENT = {
    "models": "a shell pattern and a flag: every value is valid (no match lists nothing)",
}


def test_every_command_has_a_bad_argument_case():
    missing = set(main.commands) - set(BAD_ARGUMENTS) - set(TAKES_NO_BAD_ARGUMENT)
    assert not missing, f"add a bad-argument case to tests/test_cli_errors.py for {missing}"


@pytest.fixture(scope="module")
def downstream(tmp_path_factory) -> Path:
    """A two-class ImageFolder of 12 small images."""
    root = tmp_path_factory.mktemp("down")
    rng = np.random.default_rng(1)
    for label in ("a", "b"):
        (root / label).mkdir()
        for i in range(6):
            pixels = rng.integers(0, 256, size=(90, 120, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


CASES = [
    pytest.param(case[0], case[1], case[2] if len(case) > 2 else 1, id=f"{command}-{i}")
    for command, cases in BAD_ARGUMENTS.items()
    for i, case in enumerate(cases)
]


@pytest.mark.parametrize("argv, phrase, status", CASES)
def test_a_bad_argument_is_a_one_line_error(argv, phrase, status, image_dir, downstream, tmp_path):
    fill = {"images": image_dir, "down": downstream, "out": tmp_path / "out", "tmp": tmp_path}
    args = [a.format(**fill) for a in argv]
    quiet = ["--quiet"] if any(p.name == "quiet" for p in main.commands[args[0]].params) else []
    result = CliRunner().invoke(main, args + quiet)
    lines = result.output.strip().splitlines()
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert phrase in lines[0]


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_help_shows_an_example_of_its_own_command(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    example = result.output.split("Example:", 1)[1]
    assert f"wmprobe {command}" in example

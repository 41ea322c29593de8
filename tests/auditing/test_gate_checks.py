"""``--fail-if`` gates are checked before the audit: names it will have, and outcomes not fixed."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from wmprobe.auditing.gates import check_gates, check_gates_for_audit, parse_gate
from wmprobe.cli import main
from wmprobe.errors import GateError


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("logits:d<0.4:count>0", r"holds for no unit.*never trip"),
        ("logits:d<0.4:count<1", r"holds for no unit.*always trip"),
        ("logits:auc>1:count>=1", r"holds for no unit"),
        ("logits:q<0:count>0", r"holds for no unit"),
        ("logits:d>=0.5:share<1", r"holds for every unit"),
        ("logits:auc<=1:count>5", r"holds for every unit"),
        ("logits:d>0.9:share>2", r"share is always in \[0, 1\].*never trip"),
        ("logits:d>0.9:share>=0", r"always trip"),
        ("logits:d>0.9:count>=0", r"count is always in \[0, any number\].*always trip"),
        ("logits:d>0.9:count>-1", r"always trip"),
        ("logits:d>0.9:count<0", r"never trip"),
        ("logits:d>0.9:count=2.5", r"never trip"),
        ("logits:d>1e999:count>0", r"holds for no unit"),
    ],
)
def test_gates_whose_outcome_is_fixed_are_refused_with_the_reason(text, reason):
    with pytest.raises(GateError, match=reason):
        parse_gate(text)


def test_meaningful_gates_still_parse():
    for text in (
        "features:d>0.9:count>10",
        "*:q<0.05:count>0",
        "*:q<0.05:count=0",
        "logits:auc<0.2:share>0.01",
        "logits:d>0.5:count>0",
        "*:d>0.95:share>=1",
        "*:d<=0.6:share<0.5",
    ):
        parse_gate(text)


def test_names_the_audit_lacks_are_found_before_it():
    gates = parse_gate("chinese/features:d>0.9:count>1, lay*:d>0.9:count>1")
    check_gates(gates, ["chinese"], ["logits", "features"], lambda: ["layer1", "layer2"])
    with pytest.raises(GateError, match=r"scenario 'chinese'.*scenarios: latin"):
        check_gates(gates, ["latin"], ["logits", "features"])
    with pytest.raises(GateError, match=r"layer 'lay\*'.*layers: logits, features"):
        check_gates(gates, ["chinese"], ["logits", "features"])
    with pytest.raises(GateError, match="layer 'featurs'"):
        check_gates_for_audit(
            parse_gate("featurs:d>0.9:count>1"),
            scenarios=["latin"],
            layers=["logits", "features"],
            models=["tiny_test_net"],
        )
    with pytest.raises(GateError, match="scenario 'chinese'"):
        check_gates_for_audit(
            parse_gate("chinese/logits:d>0.9:count>1"),
            scenarios=["latin", "null"],
            layers=["logits"],
            models=["tiny_test_net"],
        )


def test_block_layers_are_expanded_from_the_model_built_without_weights():
    gates = parse_gate("layer4:d>0.9:count>1")
    check_gates_for_audit(gates, scenarios=["latin"], layers=["blocks"], models=["resnet18"])
    with pytest.raises(GateError, match="layer 'layer4'"):
        check_gates_for_audit(gates, scenarios=["latin"], layers=["logits"], models=["resnet18"])


@pytest.mark.parametrize(
    "gate", ["featurs:d>0.9:count>1", "chinese/logits:d>0.9:count>1", "logits:d<0.4:count>0"]
)
def test_cli_refuses_such_gates_with_status_2_before_any_work(image_dir, tmp_path, gate):
    out = tmp_path / "run"
    res = CliRunner().invoke(
        main,
        [
            "audit", "--images", str(image_dir), "--out", str(out), "--model", "tiny_test_net",
            "--scenarios", "latin", "--workers", "0", "--quiet", "--no-cache", "--fail-if", gate,
        ],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert res.output.startswith("Error: --fail-if: ") and len(res.output.splitlines()) == 1
    assert not out.exists()

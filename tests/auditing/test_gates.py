"""Tests of the --fail-if gate grammar and its evaluation on a unit table."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import wmprobe.auditing.gates as gate_mod
from wmprobe.auditing.gates import Gate, any_tripped, evaluate_gates, parse_gate
from wmprobe.errors import GateError, GateSyntaxError, WmprobeError


def table() -> pd.DataFrame:
    """Two scenarios x two layers; features has 100 units, logits 10."""
    rows = []
    for scenario, strength in (("latin", 0.0), ("chinese", 1.0)):
        for layer, n in (("features", 100), ("logits", 10)):
            d = np.full(n, 0.55)
            d[: int(20 * strength) if layer == "features" else int(2 * strength)] = 0.97
            q = np.where(d > 0.9, 0.001, 0.8)
            rows.append(
                pd.DataFrame(
                    {"layer": layer, "scenario": scenario, "unit": np.arange(n), "auc": d,
                     "d": d, "q": q}
                )
            )  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def test_parse_examples():
    g = parse_gate("features:d>0.9:count>10")[0]
    assert g == Gate(None, "features", "d", ">", 0.9, "count", ">", 10.0)
    g = parse_gate(" chinese / features : auc >= 0.8 : share<=1e-2 ")[0]
    assert (g.scenario, g.layer, g.column, g.op, g.value) == (
        "chinese",
        "features",
        "auc",
        ">=",
        0.8,
    )
    assert (g.measure, g.measure_op, g.limit) == ("share", "<=", 0.01)
    assert str(g) == "chinese/features:auc>=0.8:share<=0.01"
    gates = parse_gate(["logits:auc>0.8:count>=1, *:d>0.95:share>0.01", "*:q<0.05:count=0"])
    assert [str(x) for x in gates] == [
        "logits:auc>0.8:count>=1",
        "*:d>0.95:share>0.01",
        "*:q<0.05:count=0",
    ]
    assert parse_gate("layer4.2*:d>.9:count>1")[0].layer == "layer4.2*"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no gate"),
        ("features:d>0.9", "3 parts"),
        ("features:d>0.9:count>1:x", "3 parts"),
        ("features:p>0.9:count>1", "column must be one of"),
        ("features:d>>0.9:count>1", "expected column"),
        ("features:d>0.9:total>1", "measure must be one of"),
        ("features:d>0.9:count>ten", "expected measure"),
        (":d>0.9:count>1", "layer"),
        ("/features:d>0.9:count>1", "scenario"),
        ("a/b/features:d>0.9:count>1", "scenario"),
        ("feat ures:d>0.9:count>1", "layer"),
    ],
)
def test_syntax_errors_show_the_grammar(text, reason):
    with pytest.raises(GateSyntaxError, match=reason) as info:
        parse_gate(text)
    assert gate_mod.GRAMMAR in str(info.value)
    assert isinstance(info.value, WmprobeError)


def test_evaluate_count_and_share():
    t = table()
    results = evaluate_gates(parse_gate("features:d>0.9:count>10"), t)
    assert [(r.scenario, r.layer, r.observed, r.tripped) for r in results] == [
        ("latin", "features", 0.0, False),
        ("chinese", "features", 20.0, True),
    ]
    assert any_tripped(results)
    results = evaluate_gates(parse_gate("*:d>0.95:share>0.15"), t)
    tripped = {(r.scenario, r.layer): r.observed for r in results if r.tripped}
    assert tripped == {("chinese", "features"): 0.2, ("chinese", "logits"): 0.2}
    assert len(results) == 4 and all(r.n_units in (10, 100) for r in results)


def test_scenario_filter_wildcards_and_q():
    t = table()
    results = evaluate_gates(parse_gate("latin/*:q<0.05:count>0, chin*/log*:auc>0.9:count>=2"), t)
    assert [(r.gate.column, r.scenario, r.layer, r.tripped) for r in results] == [
        ("q", "latin", "features", False),
        ("q", "latin", "logits", False),
        ("auc", "chinese", "logits", True),
    ]
    assert not any_tripped(results[:2])
    text = str(results[2])
    assert "TRIPPED" in text and "chinese/logits" in text and "count = 2" in text


def test_model_column_is_grouped_on():
    t = pd.concat([table().assign(model="a"), table().assign(model="b", d=0.5)])
    results = evaluate_gates(parse_gate("chinese/features:d>0.9:count>10"), t)
    assert [(r.model, r.tripped) for r in results] == [("a", True), ("b", False)]


def test_unmatched_gate_and_bad_table():
    with pytest.raises(GateError, match="matches no scenario/layer"):
        evaluate_gates(parse_gate("backbone:d>0.9:count>1"), table())
    with pytest.raises(ValueError, match="lacks"):
        evaluate_gates(parse_gate("features:q<0.1:count>1"), table().drop(columns="q"))


def test_docstring_examples():
    assert doctest.testmod(gate_mod, extraglobs={"np": np, "pd": pd}).failed == 0

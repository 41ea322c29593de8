"""``--fail-if`` gates: fail a CI run when too many units react to watermarks.

Grammar (whitespace around tokens is allowed)::

    gates      := gate ("," gate)*          several gates; the option may also be repeated
    gate       := [scenario "/"] layer ":" column op number ":" measure op number
    scenario   := pattern                   default: every scenario
    layer      := pattern                   "*" for every layer
    pattern    := name, may hold the wildcards * ? [...] (fnmatch); no whitespace , : /
    column     := "d" | "auc" | "q"         a column of the unit table
    measure    := "count" | "share"         units meeting the condition: number, or fraction
    op         := ">" | ">=" | "<" | "<=" | "==" | "="
    number     := decimal or scientific notation, e.g. 10, 0.9, 1e-3

Examples: ``features:d>0.9:count>10`` (more than 10 units of layer ``features`` with d above 0.9,
in any scenario), ``logits:auc>0.8:count>=1``, ``*:d>0.95:share>0.01`` (any layer where more than
1% of the units have d above 0.95), ``chinese/features:d>0.9:count>5`` (scenario ``chinese``
only), ``*:q<0.05:count>0``.

A gate is evaluated separately on every (model, scenario, layer) group of the unit table that its
patterns match, and trips when the measure of that group meets the limit. A gate that matches no
group raises :class:`~wmprobe.errors.GateError`, so a typo cannot pass CI silently;
:func:`check_gates` says so before the audit, from the names the audit was asked for. A gate whose
outcome is fixed by the ranges of its column and measure (``d<0.4``: d is never below 0.5;
``share>2``; ``count>=0``) is refused when parsed, with the reason.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

import numpy as np
import pandas as pd

from wmprobe.errors import GateError, GateSyntaxError, InvalidArgumentError

__all__ = [
    "GRAMMAR",
    "Gate",
    "GateResult",
    "any_tripped",
    "check_gates",
    "check_gates_for_audit",
    "evaluate_gates",
    "parse_gate",
]

GRAMMAR = (
    "gate := [scenario/]layer:column op number:measure op number, several separated by commas; "
    "layer and scenario are names or patterns (* = all), column is d, auc or q, measure is count "
    "or share, op is one of > >= < <= == =; e.g. features:d>0.9:count>10 or "
    "chinese/*:auc>0.8:share>0.01"
)

_OPS: dict[str, Callable[[object, object], object]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "=": operator.eq,
}
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_OP = r">=|<=|==|>|<|="
_CONDITION = re.compile(rf"^(?P<name>[A-Za-z_]+)\s*(?P<op>{_OP})\s*(?P<num>{_NUMBER})$")
_PATTERN = re.compile(r"^[^\s,:/]+$")
COLUMNS = ("d", "auc", "q")
MEASURES = ("count", "share")
#: The values each column and measure can take (count has no upper bound).
RANGES: dict[str, tuple[float, float]] = {
    "d": (0.5, 1.0),
    "auc": (0.0, 1.0),
    "q": (0.0, 1.0),
    "count": (0.0, float("inf")),
    "share": (0.0, 1.0),
}


@dataclass(frozen=True)
class Gate:
    """One parsed gate; ``scenario`` None means every scenario."""

    scenario: str | None
    layer: str
    column: str
    op: str
    value: float
    measure: str
    measure_op: str
    limit: float

    def __str__(self) -> str:
        where = self.layer if self.scenario is None else f"{self.scenario}/{self.layer}"
        return (
            f"{where}:{self.column}{self.op}{_num(self.value)}:"
            f"{self.measure}{self.measure_op}{_num(self.limit)}"
        )


@dataclass(frozen=True)
class GateResult:
    """A gate evaluated on one (model, scenario, layer) group of the unit table."""

    gate: Gate
    model: str | None
    scenario: str
    layer: str
    n_units: int
    n_hits: int  # units meeting the condition
    observed: float  # n_hits (count) or n_hits / n_units (share)
    tripped: bool

    def __str__(self) -> str:
        where = f"{self.scenario}/{self.layer}"
        where = where if self.model is None else f"{self.model}:{where}"
        verdict = "TRIPPED" if self.tripped else "ok"
        value = _num(self.observed) if self.gate.measure == "count" else f"{self.observed:.4g}"
        limit = f"{self.gate.measure_op}{_num(self.gate.limit)}"
        return f"{verdict}: {self.gate} on {where}: {self.gate.measure} = {value} ({limit})"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _syntax_error(text: str, reason: str) -> GateSyntaxError:
    return GateSyntaxError(f"Cannot parse gate {text!r}: {reason}. Grammar: {GRAMMAR}")


def _parse_condition(text: str, part: str, names: tuple[str, ...], what: str):
    m = _CONDITION.match(part.strip())
    if m is None:
        raise _syntax_error(text, f"expected {what} like {names[0]}>0.9 but got {part.strip()!r}")
    if m["name"] not in names:
        raise _syntax_error(text, f"{what} must be one of {', '.join(names)}, not {m['name']!r}")
    return m["name"], m["op"], float(m["num"])


def _parse_one(text: str) -> Gate:
    parts = text.split(":")
    if len(parts) != 3:
        raise _syntax_error(text, f"expected 3 parts separated by ':' but got {len(parts)}")
    target = parts[0].strip()
    scenario, _, layer = target.rpartition("/") if "/" in target else (None, "", target)
    for name, value in (("layer", layer), ("scenario", scenario)):
        if value is not None and not _PATTERN.match(value.strip()):
            raise _syntax_error(text, f"{name} must be a name or pattern but got {value!r}")
    column, op, value = _parse_condition(text, parts[1], COLUMNS, "column")
    measure, measure_op, limit = _parse_condition(text, parts[2], MEASURES, "measure")
    scenario = None if scenario is None else scenario.strip()
    gate = Gate(scenario, layer.strip(), column, op, value, measure, measure_op, limit)
    _check_meaningful(gate)
    return gate


def _outcome(name: str, op: str, value: float) -> bool | None:
    """True when ``name op value`` holds for every value ``name`` can take, False when for none,
    None when it depends on the data."""
    low, high = RANGES[name]
    never = {
        ">": value >= high,
        ">=": value > high,
        "<": value <= low,
        "<=": value < low,
        "==": not low <= value <= high or (name == "count" and not float(value).is_integer()),
        "=": not low <= value <= high or (name == "count" and not float(value).is_integer()),
    }[op]
    always = {
        ">": value < low,
        ">=": value <= low,
        "<": value > high,
        "<=": value >= high,
        "==": low == high == value,
        "=": low == high == value,
    }[op]
    return False if never else True if always else None


def _check_meaningful(gate: Gate) -> None:
    """Refuse a gate that trips always or never, whatever the audit finds."""
    low, high = RANGES[gate.column]
    span = f"{gate.column} is always in [{_num(low)}, {_num(high)}]"
    condition = _outcome(gate.column, gate.op, gate.value)
    if condition is True:
        raise GateError(
            f"Gate {gate} is refused: {gate.column}{gate.op}{_num(gate.value)} holds for every "
            f"unit ({span}), so it measures only the layer's size; use a threshold inside."
        )
    if condition is False:
        trips = _OPS[gate.measure_op](0.0, gate.limit)
        raise GateError(
            f"Gate {gate} is refused: {gate.column}{gate.op}{_num(gate.value)} holds for no unit "
            f"({span}), so the gate would {'always' if trips else 'never'} trip."
        )
    measure = _outcome(gate.measure, gate.measure_op, gate.limit)
    if measure is not None:
        low, high = RANGES[gate.measure]
        raise GateError(
            f"Gate {gate} is refused: {gate.measure} is always in [{_num(low)}, "
            f"{'any number' if high == float('inf') else _num(high)}], so "
            f"{gate.measure}{gate.measure_op}{_num(gate.limit)} would "
            f"{'always' if measure else 'never'} trip."
        )


def check_gates(
    gates: Iterable[Gate],
    scenarios: Sequence[str],
    layers: Sequence[str],
    more_layers: Callable[[], Sequence[str]] | None = None,
) -> None:
    """Raise :class:`GateError` for a gate whose patterns match none of the names an audit will
    have: ``scenarios`` and ``layers`` (as the unit table names them). ``more_layers`` gives
    further layer names (``blocks`` expanded) when the explicit ones do not match; it is called
    at most once.

    Example:
        >>> check_gates(parse_gate("featurs:d>0.9:count>1"), ["latin"], ["logits", "features"])
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        wmprobe.errors.GateError: Gate featurs:d>0.9:count>1 names layer 'featurs', which ...
    """
    layer_names = list(layers)
    expanded = False
    for gate in gates:
        if gate.scenario is not None and not any(fnmatchcase(s, gate.scenario) for s in scenarios):
            raise GateError(
                f"Gate {gate} names scenario {gate.scenario!r}, which the audit does not have "
                f"(scenarios: {', '.join(scenarios)})."
            )
        if not any(fnmatchcase(n, gate.layer) for n in layer_names) and not expanded:
            if more_layers is not None:
                layer_names += [n for n in more_layers() if n not in layer_names]
            expanded = True
        if not any(fnmatchcase(n, gate.layer) for n in layer_names):
            raise GateError(
                f"Gate {gate} names layer {gate.layer!r}, which the audit does not have "
                f"(layers: {', '.join(layer_names)})."
            )


def parse_gate(text: str | Iterable[str]) -> list[Gate]:
    """Parse one or several gate expressions (comma-separated, or an iterable of such strings).

    Example:
        >>> [str(g) for g in parse_gate("features:d>0.9:count>10, chinese/*:q<0.05:share>=0.01")]
        ['features:d>0.9:count>10', 'chinese/*:q<0.05:share>=0.01']
    """
    texts = [text] if isinstance(text, str) else list(text)
    gates = [_parse_one(e.strip()) for t in texts for e in str(t).split(",") if e.strip()]
    if not gates:
        raise _syntax_error(", ".join(map(str, texts)), "no gate given")
    return gates


def check_gates_for_audit(
    gates: Sequence[Gate],
    *,
    scenarios: Sequence[str],
    layers: Sequence[str],
    models: Sequence[str],
    arch: str | None = None,
    unsafe_load: bool = False,
) -> None:
    """:func:`check_gates` for an audit request, before any work: ``scenarios`` as the audit takes
    them (presets, spec files, folders) and ``layers`` with ``blocks`` expanded for each of
    ``models`` (built without weights) only when the other names do not match."""
    from wmprobe.models import load_model
    from wmprobe.models.layers import BLOCKS, resolve_layers
    from wmprobe.probes.scenario import resolve_scenarios

    if not gates:
        return
    names = [s.name for s in resolve_scenarios(list(scenarios))]
    explicit = [n for n in layers if n != BLOCKS]
    for model in models:

        def blocks(model: str = model) -> list[str]:
            if BLOCKS not in layers:
                return []
            loaded = load_model(model, device="meta", arch=arch, unsafe_load=unsafe_load)
            return [layer.name for layer in resolve_layers(loaded, [BLOCKS])]

        check_gates(gates, names, explicit, blocks)


def evaluate_gates(gates: Iterable[Gate], table: pd.DataFrame) -> list[GateResult]:
    """Evaluate every gate on every (model, scenario, layer) group of ``table`` it matches.

    Args:
        gates: from :func:`parse_gate`.
        table: one row per unit with columns layer, scenario, unit and the gated columns
            (d, auc, q); an optional model column is grouped on too.

    Returns:
        One :class:`GateResult` per gate and matched group, in gate order then table order.

    Example:
        >>> t = pd.DataFrame({"layer": "fc", "scenario": "latin", "unit": [0, 1, 2],
        ...                   "auc": [0.5, 0.95, 0.99], "d": [0.5, 0.95, 0.99], "q": 0.5})
        >>> [str(r) for r in evaluate_gates(parse_gate("fc:d>0.9:count>1"), t)]
        ['TRIPPED: fc:d>0.9:count>1 on latin/fc: count = 2 (>1)']
    """
    gates = list(gates)
    need = {"layer", "scenario", "unit"} | {g.column for g in gates}
    missing = sorted(need - set(table.columns))
    if missing:
        raise InvalidArgumentError(
            f"Expected argument `table` to have columns {sorted(need)} but it lacks {missing}"
        )
    keys = ["model", "scenario", "layer"] if "model" in table.columns else ["scenario", "layer"]
    groups = list(table.groupby(keys, sort=False, dropna=False))
    results = []
    for gate in gates:
        matched = 0
        for key, group in groups:
            model, scenario, layer = key if len(keys) == 3 else (None, *key)
            if not fnmatchcase(str(layer), gate.layer):
                continue
            if gate.scenario is not None and not fnmatchcase(str(scenario), gate.scenario):
                continue
            matched += 1
            values = group[gate.column].to_numpy(dtype=np.float64)
            hits = int(np.count_nonzero(_OPS[gate.op](values, gate.value)))  # NaN: no hit
            observed = float(hits) if gate.measure == "count" else hits / max(len(group), 1)
            tripped = bool(_OPS[gate.measure_op](observed, gate.limit))
            model = None if model is None else str(model)
            results.append(
                GateResult(
                    gate, model, str(scenario), str(layer), len(group), hits, observed, tripped
                )
            )
        if not matched:
            scen = sorted(map(str, table["scenario"].unique()))
            lays = sorted(map(str, table["layer"].unique()))
            raise GateError(
                f"Gate {gate} matches no scenario/layer of the table "
                f"(scenarios: {', '.join(scen)}; layers: {', '.join(lays)})"
            )
    return results


def any_tripped(results: Iterable[GateResult]) -> bool:
    """True when at least one gate result tripped (the CI run should fail).

    Example:
        >>> t = pd.DataFrame({"layer": "fc", "scenario": "latin", "unit": [0, 1, 2],
        ...                   "auc": [0.5, 0.95, 0.99], "d": [0.5, 0.95, 0.99], "q": 0.5})
        >>> any_tripped(evaluate_gates(parse_gate("fc:d>0.9:count>2"), t))
        False
        >>> any_tripped(evaluate_gates(parse_gate("fc:d>0.9:count>1"), t))
        True
    """
    return any(r.tripped for r in results)

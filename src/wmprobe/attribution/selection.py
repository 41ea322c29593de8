"""Which units to explain: ``top:N`` per audited layer and scenario, and units named by layer.

Grammar of ``--units`` (comma-separated): ``top:N`` (the N units of highest d of every audited
layer and text scenario) and ``LAYER:UNIT`` (that unit in every text scenario), e.g.
``top:8,logits:478,features:775``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from wmprobe.errors import InvalidArgumentError


@dataclass(frozen=True)
class UnitSpec:
    """``top`` units of highest d per layer and scenario, plus ``named`` (layer, unit) pairs."""

    top: int = 0
    named: tuple[tuple[str, int], ...] = ()


def parse_units(text: str) -> UnitSpec:
    """Parse ``top:8,logits:478``.

    Example:
        >>> parse_units("top:8,logits:478")
        UnitSpec(top=8, named=(('logits', 478),))
    """
    top, named = 0, []
    for item in (t.strip() for t in str(text).split(",")):
        if not item:
            continue
        layer, sep, value = item.rpartition(":")
        if not sep or not layer or not value.isdigit():
            raise InvalidArgumentError(
                f"Expected argument `units` to be comma-separated top:N or LAYER:UNIT items "
                f"(e.g. top:8,logits:478) but got {text!r}"
            )
        if layer == "top":
            top = max(top, int(value))
        else:
            named.append((layer, int(value)))
    if top < 1 and not named:
        raise InvalidArgumentError(
            f"Expected argument `units` to pick at least one unit (top:N with N >= 1, or "
            f"LAYER:UNIT) but got {text!r}"
        )
    return UnitSpec(top=top, named=tuple(dict.fromkeys(named)))


def select_units(table: pd.DataFrame, scenarios: Sequence[str], spec: UnitSpec) -> pd.DataFrame:
    """The rows of an audit's unit table to explain, in the order top-d first, then named.

    ``table`` is ``units.parquet``; ``scenarios`` the text scenarios to explain. A named unit that
    the table lacks is an error that names the layers and the unit range.
    """
    part = table[table["scenario"].isin(list(scenarios))]
    picked = []
    for _, group in part.groupby(["scenario", "layer"], sort=False):
        best = group.sort_values(["d", "unit"], ascending=[False, True], kind="stable")
        picked.append(best.head(spec.top))
    for layer, unit in spec.named:
        rows = part[(part["layer"] == layer) & (part["unit"] == unit)]
        if rows.empty:
            layers = part.groupby("layer")["unit"].max()
            known = ", ".join(f"{k} (0-{v})" for k, v in layers.items())
            raise InvalidArgumentError(
                f"Expected a unit of an audited layer but got {layer}:{unit}; audited: {known}"
            )
        picked.append(rows)
    if not picked:
        return part.iloc[:0]
    out = pd.concat(picked).drop_duplicates(["scenario", "layer", "unit"])
    return out.reset_index(drop=True)

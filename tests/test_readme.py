"""The README's module map names every module of the package, and only modules that exist."""

from __future__ import annotations

import re

from tests.conftest import REPO

PACKAGE = REPO / "src" / "wmprobe"


def _map_rows() -> set[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+\.py)` \|", section, flags=re.M))


def test_the_module_map_has_one_row_per_module():
    modules = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if not (p.name == "__init__.py" and p.parent != PACKAGE)  # packages: their modules' rows
    }
    rows = _map_rows()
    assert not modules - rows, f"add README module-map rows for {sorted(modules - rows)}"
    assert not rows - modules, f"README module-map rows name no module: {sorted(rows - modules)}"

"""The mitigation step of ``wmprobe reproduce``: the paper's sweep for every audited model."""

from __future__ import annotations

import json
from pathlib import Path

from wmprobe.auditing import runfolder
from wmprobe.constants import PAPER_FRACTIONS
from wmprobe.extraction.cache import slug
from wmprobe.mitigation.pipeline import mitigate
from wmprobe.probes.scenario import Scenario

#: The scenario whose d ranks the backbone's units, as in the paper.
STUDY_SCENARIO = "chinese"


def reproduce_step(study_dir: Path, downstream: Path, models: list[str], **options) -> dict:
    """Run the paper's mitigation sweep for each model of a study, into ``study_dir/mitigation``.

    The probe images, seed and limit are the study's (from ``study.json``); the units are ranked
    by d on the study's ``chinese`` scenario (without one, on its first scenario, as drawn in the
    study) and the ten paper fractions are swept. Extra ``options`` go
    to :func:`wmprobe.mitigation.mitigate`. Returns, per model, the output folder and the table.
    """
    study = runfolder.read_json(Path(study_dir) / runfolder.STUDY_JSON)
    scenario = _study_scenario(study)
    results: dict[str, dict] = {}
    for model in models:
        run = mitigate(
            study["images"],
            downstream,
            model=model,
            scenarios=(scenario,),
            fractions=PAPER_FRACTIONS,
            probe_seed=int(study.get("seed") or 0),
            limit=study.get("limit"),
            **options,
        )
        out = Path(study_dir) / runfolder.MITIGATION_DIR / slug(model)
        run.save(out)
        table = run.table()
        results[model] = {
            "folder": str(out),
            "table": json.loads(table.to_json(orient="records")),
        }
    return {"scenario": scenario.name, "models": results}


def _study_scenario(study: dict) -> Scenario:
    """The study's ``chinese`` scenario (as its run drew it); without one, its first scenario."""
    definitions = study.get("scenario_definitions") or []
    scenarios = {s.name: s for s in map(Scenario.from_dict, definitions)}
    if STUDY_SCENARIO in scenarios or not scenarios:
        return scenarios.get(STUDY_SCENARIO) or Scenario.preset(STUDY_SCENARIO)
    return next(iter(scenarios.values()))

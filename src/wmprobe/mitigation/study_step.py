"""The mitigation step of ``wmprobe reproduce``: the paper's sweep for every audited model."""

from __future__ import annotations

import json
from pathlib import Path

from wmprobe.constants import PAPER_FRACTIONS
from wmprobe.mitigation.pipeline import mitigate

#: The scenario whose d ranks the backbone's units, as in the paper.
STUDY_SCENARIO = "chinese"


def reproduce_step(study_dir: Path, downstream: Path, models: list[str], **options) -> dict:
    """Run the paper's mitigation sweep for each model of a study, into ``study_dir/mitigation``.

    The probe images, seed and limit are the study's (from ``study.json``); the units are ranked
    by d on the ``chinese`` scenario and the ten paper fractions are swept. Extra ``options`` go
    to :func:`wmprobe.mitigation.mitigate`. Returns, per model, the output folder and the table.
    """
    study = json.loads((Path(study_dir) / "study.json").read_text())
    results: dict[str, dict] = {}
    for model in models:
        run = mitigate(
            study["images"],
            downstream,
            model=model,
            scenarios=(STUDY_SCENARIO,),
            fractions=PAPER_FRACTIONS,
            probe_seed=int(study.get("seed") or 0),
            limit=study.get("limit"),
            **options,
        )
        out = Path(study_dir) / "mitigation" / model
        run.save(out)
        table = run.table()
        results[model] = {
            "folder": str(out),
            "table": json.loads(table.to_json(orient="records")),
        }
    return {"scenario": STUDY_SCENARIO, "models": results}

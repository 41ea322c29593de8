"""A frame's activation does not depend on which other frames share its forward pass (issue 13.6).

The null scenario draws nothing, so its values must equal the clean ones bit for bit, and every
AUC must be exactly 0.5, however the cache was filled: clean values computed beside other probes
(in another run, in batches of other shapes) and null values computed alone.
"""

from __future__ import annotations

import numpy as np

from wmprobe.auditing.run import audit
from wmprobe.extraction.activations import extract
from wmprobe.models import load_model
from wmprobe.probes.images import scan_folder
from wmprobe.probes.scenario import Scenario


def test_null_added_to_a_cache_of_clean_values_gives_auc_exactly_half(image_dir, tmp_path):
    cache = tmp_path / "cache"
    kw = {"model": "tiny_test_net", "layers": ["logits", "features"], "batch_size": 5}
    kw |= {"num_workers": 0, "progress": False, "cache": cache}
    audit(image_dir, scenarios=["chinese", "latin"], **kw)  # clean computed beside two probes
    result = audit(image_dir, scenarios=["null"], **kw)  # clean from the cache, null alone
    assert result.activations.frames_computed == 12  # only the null frames ran
    assert (result.table["auc"] == 0.5).all()
    assert result.table["d"].max() == 0.5
    for layer in ("logits", "features"):
        clean = result.activations.get(layer, "clean")
        null = result.activations.get(layer, "null")
        assert np.array_equal(clean, null)


def test_values_do_not_depend_on_the_other_variants_or_on_what_was_cached(image_dir, tmp_path):
    model = load_model("tiny_test_net", device="cpu")
    records = scan_folder(image_dir).records
    kw = {"layers": ["logits"], "batch_size": 5, "num_workers": 0, "progress": False}
    alone = extract(model, records, [Scenario.preset("latin")], **kw)  # no cache, two variants
    many = [Scenario.preset(s) for s in ("chinese", "hindi", "latin", "numerals")]
    mixed = extract(model, records, many, cache=tmp_path / "c", **kw)
    for variant in ("clean", "latin"):
        assert np.array_equal(alone.get("logits", variant), mixed.get("logits", variant))

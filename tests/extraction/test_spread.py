"""Many models' activations at once on an engine, before their audits (reproduce --engine ray)."""

from __future__ import annotations

import pytest

from tests.study_helpers import labelled_images, small_study
from wmprobe.auditing.run import audit
from wmprobe.errors import WmprobeError
from wmprobe.extraction.cache import ActivationCache
from wmprobe.extraction.chunks import ModelRecipe, load_recipe
from wmprobe.extraction.engines import LocalEngine, WorkerResources
from wmprobe.extraction.spread import fill_cache
from wmprobe.models import get_model_spec, load_model
from wmprobe.probes.images import scan_folder


class _RemoteHere(LocalEngine):
    """The local engine dressed as a remote one: each job rebuilds its model from the spec, as a
    Ray worker does (the Ray engine itself: tests/extraction/test_ray_engine.py)."""

    name = "remote-here"
    remote = True


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return labelled_images(tmp_path_factory.mktemp("labelled"))


def test_filled_cache_is_exactly_what_the_audits_read(images, tmp_path):
    cache = ActivationCache(tmp_path / "cache")
    failed = fill_cache(
        scan_folder(images),
        ["tiny_test_net", "no_such_net", "tiny_test_net_b"],
        ["chinese"],
        ["logits", "features"],
        engine=_RemoteHere(threads=1, loader_workers=0),
        cache=cache,
        progress=False,
    )
    assert list(failed) == ["no_such_net"] and "UnknownModelError" in failed["no_such_net"]
    for model in ("tiny_test_net", "tiny_test_net_b"):
        result = audit(images, model=model, scenarios=["chinese"], cache=cache, progress=False)
        assert result.activations.frames_computed == 0  # all read from the filled cache


@pytest.mark.slow
def test_reproduce_on_a_remote_engine_gives_the_tables_of_a_plain_run(
    images, tmp_path, monkeypatch
):
    monkeypatch.setenv("WMPROBE_CACHE", str(tmp_path / "plain-cache"))
    plain = small_study(images, tmp_path / "plain", report=False)
    monkeypatch.setenv("WMPROBE_CACHE", str(tmp_path / "spread-cache"))
    engine = _RemoteHere(threads=1, loader_workers=0)
    spread = small_study(images, tmp_path / "spread", report=False, engine=engine)
    assert {m: s.status for m, s in spread.statuses.items()} == {
        m: s.status for m, s in plain.statuses.items()
    }
    audited = [m for m, s in plain.statuses.items() if s.status == "audited"]
    assert len(audited) == 2
    for model in audited:
        a = (tmp_path / "plain" / "models" / model / "units.csv").read_bytes()
        b = (tmp_path / "spread" / "models" / model / "units.csv").read_bytes()
        assert a == b


def test_a_worker_with_other_weights_or_code_stops_with_both_checksums():
    spec = get_model_spec("tiny_test_net")
    recipe = ModelRecipe(spec, pretrained=True, weights="0" * 40)
    with pytest.raises(WmprobeError, match="other weights.*000000000000"):
        load_recipe(recipe, WorkerResources(cpus=1))
    model = load_recipe(ModelRecipe(spec, True, load_model("tiny_test_net").weights_hash()),
                         WorkerResources(cpus=1))  # fmt: skip
    recipe = ModelRecipe(spec, True, model.weights_hash(), "cpu", code="1" * 40)
    with pytest.raises(WmprobeError, match="code.*differs.*111111111111"):
        load_recipe(recipe, WorkerResources(cpus=1))
    with pytest.raises(WmprobeError, match="cpu worker got a cuda job"):
        load_recipe(ModelRecipe(spec, True, model.weights_hash(), "cuda"), WorkerResources(1))

import numpy as np
import pytest

from wmprobe.attribution.canonizers import canonizers_for
from wmprobe.attribution.maps import UnitAttributor
from wmprobe.models import load_model


def test_each_family_gets_its_canonizers():
    resnet = load_model("resnet18", device="cpu", pretrained=False)
    assert canonizers_for(resnet)[1].startswith("ResNetCanonizer")
    lite = load_model("efficientnet_lite0", device="cpu", pretrained=False)
    (named,), text = canonizers_for(lite, prefix="net.")
    assert text.startswith("NamedMergeBatchNorm (49 ")
    assert all(b.startswith("net.") for _, b in named.name_map)
    tiny = load_model("tiny_test_net", device="cpu")
    assert canonizers_for(tiny)[1].startswith("SequentialMergeBatchNorm")


@pytest.mark.slow
def test_lrp_leaves_the_model_as_it_was():
    lite = load_model("efficientnet_lite0", device="cpu", pretrained=False)
    before = {k: v.clone() for k, v in lite.module.state_dict().items()}
    frames = np.random.default_rng(0).integers(0, 256, size=(1, 224, 224, 3), dtype=np.uint8)
    relevance = UnitAttributor(lite, "logits").maps(frames, 3, "lrp")
    assert relevance.shape == (1, 224, 224) and np.isfinite(relevance).all()
    after = lite.module.state_dict()
    assert all((before[k] == after[k]).all() for k in before)  # batch norms merged, then undone
    assert lite.module.training is False

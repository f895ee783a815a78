import pytest
import torch

from dnas.cells.fbnet import FBNET_SPACE, FBNetSupernet, adapted_strides, layer_plan
from dnas.genotypes import Genotype, GenotypeError
from dnas.ops.fbnet import FBNET_PRIMITIVES


def test_imagenet_layout_is_the_paper_table():
    c_stem, s_stem, plan = layer_plan(224)
    assert (c_stem, s_stem, len(plan)) == (16, 2, 22)
    assert [c for _, c, _ in plan] == [16] + [24] * 4 + [32] * 4 + [64] * 4 + [112] * 4 + [184] * 4 + [352]
    assert [i for i, (_, _, s) in enumerate(plan) if s == 2] == [1, 5, 9, 17]  # 112 -> 56 -> 28 -> 14 -> 7


@pytest.mark.parametrize("size,reductions", [(224, 5), (32, 3), (8, 1), (2, 0)])
def test_strides_adapt_to_the_input(size, reductions):
    strides = adapted_strides(size)
    assert strides.count(2) == reductions
    assert size // 2**reductions >= min(size, 4)


def test_supernet_forward_alpha_and_genotype_round_trip():
    torch.manual_seed(0)
    net = FBNetSupernet(num_classes=10, in_channels=1, input_size=8, width_mult=0.25, head_channels=16)
    assert net.alpha("layers").shape == (22, 9)
    assert [n for n, _ in net.named_arch_parameters()] == ["arch.layers.alpha"]
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with torch.no_grad():
        net.alpha("layers").zero_()
        net.alpha("layers")[:, FBNET_PRIMITIVES.index("k5_e6")] = 1.0
        net.alpha("layers")[3, FBNET_PRIMITIVES.index("skip")] = 2.0
    g = net.genotype()
    assert g.cells["layers"].ops() == ["k5_e6"] * 3 + ["skip"] + ["k5_e6"] * 18
    again = Genotype.from_json(g.to_json())
    assert again == g and again.meta["build"]["options"]["width_mult"] == 0.25


def test_space_rejects_bad_genotypes():
    with pytest.raises(GenotypeError, match="allowed ops"):
        Genotype.chain(["k7_e6"] * 22, "fbnet").validate(FBNET_SPACE)
    with pytest.raises(GenotypeError, match="exactly one edge"):
        Genotype.chain(["skip"] * 21, "fbnet").validate(FBNET_SPACE)
    with pytest.raises(ValueError, match="not FBNet blocks"):
        FBNetSupernet(primitives=("sep_conv_3x3",))

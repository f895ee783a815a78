"""Random genotypes (dnas.genotypes.sampling) always validate against their space, for every shipped space."""

import random
from collections import Counter

import pytest
from torch import nn

import dnas  # noqa: F401 - registers every built-in space
from dnas.cells.conv1d import Conv1dSupernet
from dnas.cells.custom import CellSupernet
from dnas.export import build_model
from dnas.genotypes import Genotype, GenotypeError, get_space_spec, registered_spaces
from dnas.genotypes.sampling import random_genotype, rule_exclude

BUILT_IN = ("conv1d", "darts", "fbnet", "nasnet", "nb201", "tabular")


@pytest.mark.parametrize("space", BUILT_IN)
def test_random_genotypes_of_every_shipped_space_validate(space):
    assert space in registered_spaces()
    spec = get_space_spec(space)
    rng = random.Random(0)
    seen = {name: Counter() for name in spec.cells}
    draws = [random_genotype(spec, rng) for _ in range(200)]
    for g in draws:
        back = Genotype.from_json(g.to_json(), source=f"random {space}")  # validated against the registered spec
        assert back == g and back.space == space
        for name, cell in g.cells.items():
            seen[name].update(cell.ops())
    for name, cs in spec.cells.items():
        allowed = set(cs.ops) - set(rule_exclude(cs))
        assert set(seen[name]) == allowed  # every allowed op drawn, no excluded one
    assert len(set(draws)) > 150  # draws differ
    # seeded: the same seed gives the same draws
    assert [random_genotype(spec, 7) for _ in range(3)] == [random_genotype(spec, 7)] * 3
    assert random_genotype(spec, 1) != random_genotype(spec, 2)


def test_darts_rule_two_distinct_inputs_per_node_and_no_none():
    spec = get_space_spec("darts")
    for seed in range(50):
        g = random_genotype(spec, seed)
        for cell in g.cells.values():
            assert "none" not in cell.ops() and cell.concat == (2, 3, 4, 5)
            for node in range(2, 6):
                srcs = [e.src for e in cell.inputs_of(node)]
                assert len(srcs) == 2 == len(set(srcs)) and all(s < node for s in srcs)


class SparseSpace(CellSupernet):
    """A user space whose spec fixes neither all edges nor the in-degree: the template gives the edges."""

    space_name = "test_random_sparse"
    candidates = ("none", "skip_connect", "conv1d_k3", "conv1d_k5")
    num_inputs = 1
    num_nodes = 3
    edges = ((0, 1), (1, 2), (0, 3), (2, 3))
    cell_output = "last"
    genotype_exclude = ("none",)

    def __init__(self, channels: int = 4, num_classes: int = 3):
        super().__init__()
        self.stem = nn.Conv1d(1, channels, 3, padding=1)
        self.cell = self.make_cell(channels)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x, weights=None):
        return self.head(self.cell(self.stem(x), self.cell_weights(weights)).mean(-1))


@pytest.mark.parametrize("space_cls", [SparseSpace, Conv1dSupernet])
def test_user_and_cell_spaces_draw_from_the_template_and_build(space_cls):
    net = space_cls(channels=4, num_classes=3) if space_cls is SparseSpace else space_cls(channels=4, stages=1)
    found = net.genotype()
    spec = net.space_spec
    for seed in range(20):
        g = random_genotype(spec, seed, template=found, exclude=("none",))
        assert g.meta["build"] == found.meta["build"]
        assert [(e.src, e.dst) for e in g.cells["cell"].edges] == [(e.src, e.dst) for e in found.cells["cell"].edges]
        assert "none" not in g.cells["cell"].ops()
    model = build_model(g)  # builds at the searched sizes
    assert isinstance(model, nn.Module)
    with pytest.raises(GenotypeError, match="every op of the space is excluded"):
        random_genotype(spec, 0, exclude=spec.cells["cell"].ops)
    with pytest.raises(GenotypeError, match="template genotype is of space"):
        random_genotype(get_space_spec("nb201"), 0, template=found)

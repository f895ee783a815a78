"""The DARTS evaluation network: a genotype's discrete cells stacked as in the reference ``cnn/model.py``.

``build_darts_network(genotype, init_channels=36, layers=20, ...)`` is the builder registered for the ``"darts"``
space (and for ``"nasnet"``, the 5-node cells of NASNet and AmoebaNet that the DARTS code evaluates in the same
network). The layout, as in ``cnn/model.py``:

* stem: CIFAR ``conv3×3 (in -> 3C) + BN``; ImageNet ``stem0`` (two stride-2 convs, in -> C/2 -> C) and ``stem1``
  (ReLU, stride-2 conv C -> C, BN), and cell 0 then treats its inputs as coming after a reduction;
* ``layers`` cells, reductions (doubling C) at ``layers//3`` and ``2*layers//3``; in a reduction cell the ops reading
  the two cell inputs have stride 2;
* ops from the op registry at ``affine=True``; the pooling ops have no BN after them (only the search mixed op adds
  one); drop-path on every op that is not an identity, during training only;
* optional auxiliary head after cell ``2*layers//3`` (CIFAR: AvgPool 5 stride 3, ImageNet: stride 2 and no BN after
  the 768-channel conv, as the reference);
* global average pooling and a linear classifier.

Module names equal the reference's (``stem``, ``cells.<i>.preprocess0``, ``cells.<i>._ops.<j>``,
``auxiliary_head.features``, ``classifier``), so a state dict saved by the reference evaluation code loads key for key.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import torch
from torch import nn

from dnas.cells.darts import DARTS_SPACE, darts_stack, preprocess
from dnas.cells.darts import NASNET_OPS as NASNET_OPS  # the nasnet space is registered with the darts one
from dnas.cells.darts import NASNET_SPACE as NASNET_SPACE
from dnas.cells.edges import drop_path as drop_path  # the reference name's home (quark0/darts utils.drop_path)
from dnas.cells.edges import incoming_edges, run_nodes
from dnas.export.builders import register_builder
from dnas.genotypes import CellGenotype, CellSpec, Genotype, GenotypeError, SpaceSpec
from dnas.genotypes.build import build_options
from dnas.ops.registry import build_op

Stem = Literal["cifar", "imagenet"]


def cell_nodes(cell: CellGenotype) -> list[int]:
    """The nodes ``cell``'s edges go into (its intermediate nodes), sorted."""
    return sorted({e.dst for e in cell.edges})


def check_genotype(genotype: Genotype) -> None:
    """Raise :class:`GenotypeError` naming the problem if ``genotype`` cannot be built as a DARTS network.

    Its cells are ``normal`` and ``reduce``; each has edges, a ``concat``, and intermediate nodes numbered ``2, 3,
    ...`` without gaps, any number of them with any in-degree (NASNet and AmoebaNet cells too). The rest (registered
    ops, edges from earlier nodes, ``concat`` of existing nodes) is :meth:`~dnas.genotypes.Genotype.validate` against
    the spec those nodes make.
    """
    if set(genotype.cells) != {"normal", "reduce"}:
        raise GenotypeError(
            f"a {genotype.space!r} genotype needs exactly the cells ['normal', 'reduce'], got {sorted(genotype.cells)}"
        )
    specs = {}
    for name, cell in genotype.cells.items():
        if not cell.edges or not cell.concat:
            raise GenotypeError(f"cells.{name} needs edges and a concat (the nodes whose outputs form the cell output)")
        nodes = cell_nodes(cell)
        missing = sorted(set(range(2, max(nodes) + 1)) - set(nodes))
        if missing:
            raise GenotypeError(
                f"cells.{name}: node(s) {missing} have no incoming edge, so they do not exist; "
                "intermediate nodes must be numbered 2, 3, ... without gaps"
            )
        ops = DARTS_SPACE.cells["normal"].ops
        specs[name] = CellSpec(ops, num_inputs=2, num_nodes=max(max(nodes) - 1, 1), any_registered_op=True)
    genotype.validate(SpaceSpec(genotype.space, specs))


class EvalCell(nn.Module):
    """A discrete cell: preprocess both inputs to C channels, each node sums its ops' outputs, concat ``concat``.

    The node loop is every cell's (:func:`~dnas.cells.edges.run_nodes`, with drop-path); the cell is not a
    :class:`~dnas.cells.edges.DagCell` because its modules keep the reference names (``preprocess0``, ``_ops.<j>``
    directly on the cell, where a DagCell has ``edges.<j>``), so reference evaluation state dicts load key for key.

    Args:
        cell: the cell's genotype (edges ``(op, src, dst)`` in the order their modules are created).
        C_prev_prev: channels of input 0 (output of cell k-2).
        C_prev: channels of input 1 (output of cell k-1).
        C: channels inside the cell.
        reduction: halve the resolution (ops reading the inputs get stride 2).
        reduction_prev: the previous cell halved the resolution, so input 0 is reduced with a FactorizedReduce.
    """

    def __init__(
        self, cell: CellGenotype, C_prev_prev: int, C_prev: int, C: int, reduction: bool, reduction_prev: bool
    ):
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = preprocess(C_prev_prev, C_prev, C, reduction_prev, affine=True)
        self.edge_index = tuple((e.src, e.dst) for e in cell.edges)
        self.concat = tuple(cell.concat)
        self.num_nodes = len(cell_nodes(cell))
        self.incoming = incoming_edges(self.edge_index, 2, self.num_nodes)
        # every op is registered (check_genotype); the ops reading the two inputs of a reduction cell have stride 2
        self._ops = nn.ModuleList(build_op(e.op, C, C, 2 if reduction and e.src < 2 else 1, True) for e in cell.edges)
        # drop-path skips identities (reference: `isinstance(op, Identity)`)
        self.droppable = tuple(not isinstance(op, nn.Identity) for op in self._ops)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        """The cell on the outputs of the two previous cells; drop-path (``drop_prob``) applies in training only."""
        drop_prob = drop_prob if self.training else 0.0
        inputs = [self.preprocess0(s0), self.preprocess1(s1)]
        states = run_nodes(
            inputs, self._ops, self.edge_index, self.incoming, drop_prob=drop_prob, droppable=self.droppable
        )
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """Auxiliary classifier on the output of cell ``2*layers//3`` (reference ``AuxiliaryHeadCIFAR/ImageNet``).

    CIFAR (8×8 input): ReLU, AvgPool(5, stride 3) -> 2×2, conv1×1 -> 128, BN, ReLU, conv2×2 -> 768, BN, ReLU, linear.
    ImageNet (14×14 input): AvgPool stride 2 and no BN after the 768 conv (the reference omits it on purpose, to match
    the paper's experiments).
    """

    def __init__(self, C: int, num_classes: int, stem: Stem = "cifar"):
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3 if stem == "cifar" else 2, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
        ]
        if stem == "cifar":
            layers.append(nn.BatchNorm2d(768))
        layers.append(nn.ReLU(inplace=False))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 5:
            raise ValueError(
                f"the auxiliary head needs a feature map of at least 5×5 after cell 2*layers//3 (8×8 for 32×32 "
                f"CIFAR inputs, 14×14 for 224×224 ImageNet inputs), got {tuple(x.shape[-2:])}; use larger inputs "
                f"or auxiliary=False"
            )
        x = self.features(x)
        return self.classifier(x.flatten(1))


class DartsEvalNetwork(nn.Module):
    """The discrete network of a DARTS-space genotype (reference ``NetworkCIFAR`` / ``NetworkImageNet``).

    ``forward(x)`` returns logits; :meth:`forward_with_aux` also returns the auxiliary logits (None unless training
    with ``auxiliary=True``). ``drop_path_prob`` is an attribute so a training loop can ramp it per epoch.

    Args:
        genotype: a ``darts`` or ``nasnet`` space genotype (cells ``normal`` and ``reduce``).
        init_channels: C of the first cells (CIFAR-10: 36, ImageNet: 48).
        layers: number of cells (CIFAR-10: 20, ImageNet: 14).
        num_classes: classifier outputs.
        in_channels: image channels.
        stem: ``"cifar"`` (one 3×3 conv to 3C) or ``"imagenet"`` (three stride-2 convs).
        auxiliary: add the auxiliary head after cell ``2*layers//3``.
        drop_path_prob: drop-path probability used in training (the retrain loop ramps it).
    """

    def __init__(
        self,
        genotype: Genotype,
        init_channels: int = 36,
        layers: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        stem: Stem = "cifar",
        auxiliary: bool = False,
        drop_path_prob: float = 0.0,
    ):
        super().__init__()
        _check_options(init_channels, layers, num_classes, in_channels, stem, drop_path_prob)
        check_genotype(genotype)
        self.stem_type = stem
        self.layers = layers
        self.auxiliary = auxiliary
        self.drop_path_prob = float(drop_path_prob)
        C = init_channels
        if stem == "cifar":
            C_stem = 3 * C  # stem_multiplier = 3
            self.stem = nn.Sequential(nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem))
        else:
            self.stem0 = nn.Sequential(
                nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C // 2),
                nn.ReLU(inplace=False),
                nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C)
            )
            C_stem = C
        cells = {reduction: genotype.cells["reduce" if reduction else "normal"] for reduction in (False, True)}
        slots = darts_stack(layers, C, C_stem, lambda reduction: len(cells[reduction].concat), stem == "imagenet")
        self.cells = nn.ModuleList(
            EvalCell(cells[s.reduction], s.C_prev_prev, s.C_prev, s.C, s.reduction, s.reduction_prev) for s in slots
        )
        self.aux_index = 2 * layers // 3
        if auxiliary:
            self.auxiliary_head = AuxiliaryHead(slots[self.aux_index].C_out, num_classes, stem)
        # the reference ImageNet net uses AvgPool2d(7), which equals global pooling at 224×224 inputs
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(slots[-1].C_out, num_classes)

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, auxiliary logits or None)`` for images ``x`` of shape (B, in_channels, H, W)."""
        logits_aux = None
        if self.stem_type == "cifar":
            s0 = s1 = self.stem(x)
        else:
            s0 = self.stem0(x)
            s1 = self.stem1(s0)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.auxiliary and self.training:
                logits_aux = self.auxiliary_head(s1)
        out = self.global_pooling(s1)  # (B, C_prev, 1, 1)
        return self.classifier(out.flatten(1)), logits_aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x)[0]


def _check_options(init_channels, layers, num_classes, in_channels, stem, drop_path_prob) -> None:
    if stem not in ("cifar", "imagenet"):
        raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
    if not isinstance(layers, int) or layers < 1:
        raise ValueError(f"layers must be an int >= 1, got {layers!r}")
    if not isinstance(init_channels, int) or init_channels < 2 or init_channels % 2:
        raise ValueError(f"init_channels must be an even int >= 2 (FactorizedReduce halves it), got {init_channels!r}")
    if stem == "imagenet" and init_channels % 4:
        raise ValueError(f"the imagenet stem needs init_channels divisible by 4, got {init_channels}")
    for label, v in (("num_classes", num_classes), ("in_channels", in_channels)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{label} must be an int >= 1, got {v!r}")
    if not 0.0 <= drop_path_prob < 1.0:
        raise ValueError(f"drop_path_prob must be in [0, 1), got {drop_path_prob}")


def build_darts_network(genotype: Genotype, **options: Any) -> DartsEvalNetwork:
    """Builder of the ``darts`` and ``nasnet`` spaces: a :class:`DartsEvalNetwork`.

    Options: the genotype's recorded build options (a search records its supernet's sizes), then ``options``; the
    rest take the class defaults (the CIFAR-10 evaluation network).
    """
    return DartsEvalNetwork(genotype, **build_options(genotype, options, list(_DARTS_SIGNATURE.parameters)))


_DARTS_SIGNATURE = inspect.signature(DartsEvalNetwork)
_DARTS_SIGNATURE = _DARTS_SIGNATURE.replace(parameters=list(_DARTS_SIGNATURE.parameters.values())[1:])
build_darts_network.signature = _DARTS_SIGNATURE  # the options it takes (dnas.export.builder_signature)


register_builder("darts", build_darts_network)
register_builder("nasnet", build_darts_network)

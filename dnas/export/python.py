"""The ``python`` artifact: ``model.py`` (needs only torch) assembled from a built network by :mod:`dnas.export.source`.

Layout of the written file, top to bottom: a docstring with usage, imports (torch and the standard library only),
the copied source of every class and function the network's forward pass reaches, the data (``GENOTYPE_NAME``,
``GENOTYPE``, ``OPTIONS``, ``INPUT_SHAPE``, ``NETWORK``), and ``build_model()`` / ``load_model()``.

User-supplied strings (the genotype's name, cell and op names, options) only ever appear inside the data literals,
written with ``repr``; :func:`render` re-parses the finished file with :mod:`ast` and checks that its top-level
statements are exactly the expected ones and that each data literal evaluates to the value it must hold, so no string
can become code. :func:`verify` then runs the file and compares the rebuilt network's outputs with the model's.
"""

from __future__ import annotations

import ast
import pprint
import types
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dnas.export.source import SourceCollector, SourceError, is_plain
from dnas.genotypes import Genotype

_RUNTIME = '''

_CLASSES = {__CLASSES__}


def _module(node):
    """One module of NETWORK: the class without its constructor, then its attributes, tensors and children."""
    cls = _CLASSES[node["class"]]
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    module.__dict__.update(node["attrs"])
    for name, spec in node["parameters"].items():
        value = None if spec is None else torch.zeros(spec[0], dtype=getattr(torch, spec[1]))
        module.register_parameter(name, None if value is None else nn.Parameter(value, requires_grad=spec[2]))
    for name, spec in node["buffers"].items():
        module.register_buffer(name, None if spec is None else torch.zeros(spec[0], dtype=getattr(torch, spec[1])))
    for name, child in node["children"].items():
        module.add_module(name, _module(child))
    return module


def build_model():
    """The network, freshly initialised by each layer's own ``reset_parameters`` (train mode)."""
    model = _module(NETWORK)
    for layer in model.modules():
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    return model


def load_model(weights=Path(__file__).with_name("weights.pt"), map_location="cpu"):
    """The network with the exported weights, in eval mode (the file is read with weights_only=True)."""
    model = _module(NETWORK)
    model.load_state_dict(torch.load(weights, map_location=map_location, weights_only=True))
    return model.eval()


if __name__ == "__main__":
    net = load_model()
    x = torch.randn(2, *INPUT_SHAPE)
    with torch.no_grad():
        print(GENOTYPE_NAME, tuple(x.shape), "->", tuple(net(x).shape))
'''

_DATA = ("GENOTYPE_NAME", "GENOTYPE", "OPTIONS", "INPUT_SHAPE", "NETWORK")


def render(
    model: nn.Module,
    genotype: Genotype,
    options: Mapping[str, Any],
    input_shape: Sequence[int],
    name: str,
    version: str,
) -> str:
    """The text of ``model.py`` for ``model`` (built from ``genotype`` with ``options``; input ``(C, ...)``).

    Raises:
        SourceError: the network uses something the python format cannot carry, a value is not plain data, or the
            file failed its checks (see :func:`check_structure`).
    """
    collector = SourceCollector()
    network = collector.describe(model)
    data = {
        "GENOTYPE_NAME": name,
        "GENOTYPE": genotype.to_dict(),
        "OPTIONS": dict(options),
        "INPUT_SHAPE": tuple(input_shape),
        "NETWORK": network,
    }
    for key, value in data.items():
        if not is_plain(value):
            raise SourceError(f"refusing to write model.py: {key} holds a value that is not plain data")
    classes = sorted(_classes(network))
    doc = _docstring(genotype.space, name, data["INPUT_SHAPE"], version)
    body = collector.source()
    text = _assemble(doc, body, {k: _literal(v) for k, v in data.items()}, classes)
    skeleton = _assemble("", body, dict.fromkeys(_DATA, "None"), classes)
    check_structure(text, skeleton, doc, data)
    return text


def _docstring(space: str, name: str, input_shape: Sequence[int], version: str) -> str:
    usage = f"logits = model(torch.randn(1, {', '.join(str(d) for d in input_shape)}))"
    return (
        f"{name!r}: a network found by dnas (space {space!r}), as standalone PyTorch.\n\n"
        f"Written by dnas {version}. This file imports only torch and the standard library. The classes below are\n"
        "the code dnas runs, copied with their forward pass only; GENOTYPE and OPTIONS are what the network was built\n"
        "from, NETWORK is its module tree as plain data, and weights.pt (beside this file) holds its weights.\n\n"
        "    import torch\n"
        "    from model import load_model\n\n"
        "    model = load_model()   # weights.pt, eval mode; build_model() gives fresh weights for training\n"
        f"    {usage}\n"
    )


def _escape_doc(text: str) -> str:
    """``text`` for a triple-double-quoted docstring: evaluates back to ``text`` and cannot close the string.

    Each line is written with escapes for backslashes, quotes, control and non-ASCII characters; lines stay lines.
    """
    return "\n".join(line.encode("unicode_escape").decode("ascii").replace('"', '\\"') for line in text.split("\n"))


def _literal(value: Any) -> str:
    """A Python literal of plain data (``repr`` laid out over lines)."""
    return pprint.pformat(value, width=120, sort_dicts=False)


def _assemble(doc: str, body: str, literals: Mapping[str, str], classes: Sequence[str]) -> str:
    data = "\n\n".join(f"{k} = {literals[k]}" for k in _DATA)
    runtime = _RUNTIME.replace("__CLASSES__", ", ".join(f"{c!r}: {c}" for c in classes))
    return f'"""{_escape_doc(doc)}"""\n\n{body}\n\n\n{data}\n{runtime.rstrip()}\n'


def _classes(node: Mapping[str, Any]) -> set[str]:
    out = {node["class"]}
    for child in node["children"].values():
        out |= _classes(child)
    return out


def check_structure(text: str, skeleton: str, doc: str, data: Mapping[str, Any]) -> None:
    """Refuse ``text`` unless it is ``skeleton`` (the same file without data) plus ``doc`` and ``data`` as literals.

    Statement by statement: the docstring must evaluate to ``doc``, each data name must be assigned a literal equal to
    its value, and every other statement must be identical to the skeleton's. So no exported value, however crafted,
    can add, change or end a statement.
    """

    def refuse(problem: str) -> SourceError:
        return SourceError(f"refusing to write model.py: the generated source {problem}")

    try:
        tree = ast.parse(text)
    except SyntaxError as err:
        raise refuse(f"does not parse ({err.msg}, line {err.lineno})") from None
    reference = ast.parse(skeleton).body
    if len(tree.body) != len(reference):
        raise refuse(f"has {len(tree.body)} statements where {len(reference)} are expected")
    for i, (got, want) in enumerate(zip(tree.body, reference)):
        if i == 0:
            if ast.get_docstring(tree, clean=False) != doc:
                raise refuse("has a docstring other than the one written")
            continue
        target = got.targets[0].id if isinstance(got, ast.Assign) and isinstance(got.targets[0], ast.Name) else None
        if target in _DATA:
            try:
                value = ast.literal_eval(got.value)
            except ValueError:
                raise refuse(f"assigns {target} something that is not a literal") from None
            if value != data[target]:  # _literal keeps types (a tuple stays a tuple), so equal means the same
                raise refuse(f"assigns {target} a value other than the one exported")
            continue
        if ast.dump(got) != ast.dump(want):
            raise refuse(f"has a statement that is not dnas' own at line {got.lineno}")


def verify(text: str, model: nn.Module, example: torch.Tensor) -> None:
    """Run ``text`` as a module, load ``model``'s weights into its network, and require the same outputs (eval).

    Raises:
        SourceError: the file fails to run, the weights do not fit, or an output differs.
    """
    module = types.ModuleType("dnas_export_check")
    module.__file__ = "<model.py>"
    try:
        exec(compile(text, "<model.py>", "exec"), module.__dict__)  # noqa: S102 - our generated file, checked above
        rebuilt = module._module(module.NETWORK)
        rebuilt.load_state_dict(model.state_dict())
        rebuilt.eval()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                want, got = model(example), rebuilt(example)
        finally:
            model.train(was_training)
    except SourceError:
        raise
    except Exception as err:
        raise SourceError(f"the generated model.py does not rebuild the network: {type(err).__name__}: {err}") from err
    if not torch.equal(want, got):
        diff = (want - got).abs().max().item() if want.shape == got.shape else f"shape {tuple(got.shape)}"
        raise SourceError(f"the generated model.py computes other outputs than the network (max difference {diff})")

"""Model summary: parameters (with and without the auxiliary head) and FLOPs at a given input size, as JSON.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts **2 FLOPs per multiply-accumulate** of
convolutions, linear layers and matrix products, and nothing for BN, pooling, activations or additions. Papers in
this field usually quote multiply-adds ("MACs", "mult-adds": DARTS ImageNet 574M), so the summary gives both
``flops`` and ``macs = flops / 2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FLOPS_DEFINITION = (
    "torch.utils.flop_counter.FlopCounterMode: 2 FLOPs per multiply-accumulate of conv/linear/matmul; BN, pooling, "
    "activations and additions are not counted. macs = flops / 2 (the 'mult-adds' papers quote)."
)


def count_parameters(model: nn.Module, auxiliary: bool = False) -> int:
    """Parameters of ``model``, as the reference ``utils.count_parameters_in_MB`` (×1e6).

    Names containing ``auxiliary`` (the auxiliary head) are excluded unless ``auxiliary`` is True.
    """
    return sum(p.numel() for n, p in model.named_parameters() if auxiliary or "auxiliary" not in n)


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one eval-mode forward of a zero tensor of ``input_shape`` (batch included)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.dtype.is_floating_point else torch.float32
    x = torch.zeros(*input_shape, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def model_summary(
    model: nn.Module, input_shape: Sequence[int], extra: dict[str, Any] | None = None, flops: bool = True
) -> dict[str, Any]:
    """Parameters and FLOPs of ``model`` for one input of ``input_shape`` (e.g. ``(1, 3, 32, 32)``).

    Args:
        model: the network (eval-mode forward; the auxiliary head does not run).
        input_shape: shape of the input tensor, batch included.
        extra: entries added to the summary (genotype name, options).
        flops: count FLOPs (one forward pass); False skips it.
    """
    params, params_aux = count_parameters(model), count_parameters(model, auxiliary=True)
    summary: dict[str, Any] = {
        "parameters": params,
        "parameters_with_auxiliary": params_aux,
        "parameters_auxiliary_head": params_aux - params,
        "parameters_note": "'parameters' excludes the auxiliary head, as the published DARTS-family figures",
        "input_shape": [int(s) for s in input_shape],
    }
    if flops:
        total = count_flops(model, input_shape)
        summary.update({"flops": total, "macs": total // 2, "flops_definition": FLOPS_DEFINITION})
    if extra:
        summary.update(extra)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """One human-readable line."""
    text = f"{summary['parameters'] / 1e6:.6f}M parameters ({summary['parameters_with_auxiliary'] / 1e6:.6f}M with aux)"
    if "flops" in summary:
        text += f", {summary['macs'] / 1e6:.2f}M MACs ({summary['flops'] / 1e6:.2f}M FLOPs)"
    return text + f" at input {tuple(summary['input_shape'])}"

"""Export: genotype -> discrete ``nn.Module`` (through a per-space builder) -> standalone artifacts.

Spaces register a builder with :func:`register_builder`; :func:`build_model` dispatches on ``genotype.space``.
"""

from dnas.export.builders import build_model, register_builder, registered_builders

__all__ = ["build_model", "register_builder", "registered_builders"]

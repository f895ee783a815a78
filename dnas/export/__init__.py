"""Export: genotype -> discrete ``nn.Module`` (through a per-space builder) -> standalone artifacts.

Spaces register a builder with :func:`register_builder`; :func:`build_model` dispatches on ``genotype.space``.
"""

from dnas.export.builders import (
    build_model,
    builder_options,
    builder_signature,
    register_builder,
    registered_builders,
    resolved_options,
)

# DARTS evaluation networks (also NASNet/AmoebaNet cells); imported on first use
register_builder("darts", lazy_module="dnas.export.darts")
register_builder("nasnet", lazy_module="dnas.export.darts")

__all__ = [
    "build_model",
    "builder_options",
    "builder_signature",
    "register_builder",
    "registered_builders",
    "resolved_options",
]

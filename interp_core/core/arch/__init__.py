"""Architecture adapters: one per model family, all mapping onto :mod:`interp_core.core.names`."""

from __future__ import annotations

from torch import nn

from interp_core.core.arch.base import Adapter, BlockWeights, ModelWeights, Site
from interp_core.core.arch.gpt2 import GPT2Adapter
from interp_core.core.arch.llama import LlamaAdapter
from interp_core.core.arch.neox import NeoXAdapter
from interp_core.core.errors import UnsupportedArchitectureError

# config.model_type -> adapter class. Llama-shaped families share one adapter.
ADAPTERS: dict[str, type[Adapter]] = {
    "gpt2": GPT2Adapter,
    "llama": LlamaAdapter,
    "qwen2": LlamaAdapter,
    "mistral": LlamaAdapter,
    "gpt_neox": NeoXAdapter,
}


def adapter_for(model: nn.Module) -> Adapter:
    """Pick the adapter for a loaded HF causal LM by its ``config.model_type``."""
    model_type = getattr(model.config, "model_type", "?")
    if model_type not in ADAPTERS:
        raise UnsupportedArchitectureError(
            f"Model type '{model_type}' is not supported yet; supported types: {', '.join(sorted(ADAPTERS))}."
        )
    return ADAPTERS[model_type](model)


__all__ = ["ADAPTERS", "Adapter", "BlockWeights", "ModelWeights", "Site", "adapter_for"]

"""The transformers names that changed inside the supported range (`transformers>=4.57` in pyproject.toml; GPU
images ship 5.17, this machine 5.25), stated once so that no call of ours raises a deprecation warning on any of
them:

- 5.24 renamed the KV cache's keyword argument and output field from `past_key_values` to `cache` (the old name
  logs a deprecation and goes in 5.40);
- 5.23 renamed gradient checkpointing to activation checkpointing (`activation_checkpointing_enable`,
  `is_activation_checkpointing`; the old names raise a FutureWarning and go in 6.0).

And the deprecation notices the libraries raise about their OWN calls of a renamed API, which no setting of ours
changes: the training run and the export hide them (`hide_library_internal_deprecations`); the tests still see
every notice (tests/deprecations.py).
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

# (message start, module that raises it): each a library's own call of a renamed API.
LIBRARY_INTERNAL_DEPRECATIONS = (
    # PEFT's get_peft_model reads the property transformers 5.23 renamed to is_activation_checkpointing.
    ("`is_gradient_checkpointing` is deprecated", r"transformers\.modeling_utils"),
    # Lightning's pytree helper tests torch's LeafSpec, which torch 2.13 deprecated.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),
)


def hide_library_internal_deprecations() -> None:
    """Ignore the notices listed in LIBRARY_INTERNAL_DEPRECATIONS, and only those."""
    for message, module in LIBRARY_INTERNAL_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, module=module)


# The name this transformers gives the KV cache, as a forward argument and as a field of the model's output.
CACHE_NAME = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def with_cache(cache: Any) -> dict[str, Any]:
    """The forward keyword argument that passes a KV cache in."""
    return {CACHE_NAME: cache}


def returned_cache(output: Any) -> Any:
    """The KV cache a forward pass with `use_cache=True` returned."""
    return getattr(output, CACHE_NAME)


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Recompute activations in the backward pass (`gradient_checkpointing_enable` before 5.23)."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()


def is_activation_checkpointing(model: nn.Module) -> bool:
    """Whether a Hugging Face model (PEFT-wrapped or not) recomputes activations in its backward pass."""
    flag = getattr(model, "is_activation_checkpointing", None)
    return bool(getattr(model, "is_gradient_checkpointing", False) if flag is None else flag)

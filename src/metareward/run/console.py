"""What a run prints besides its own lines: the deprecation notices that libraries raise about their OWN calls of
another library's renamed API, which no setting of ours changes and no user can act on, are kept off the console.
Our own calls are held to the current APIs by the tests (tests/deprecations.py), which see every notice."""

from __future__ import annotations

import warnings

# (message start, module that raises it, why it is not ours)
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

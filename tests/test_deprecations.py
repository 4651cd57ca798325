"""The guard every test runs under (`conftest._no_deprecated_calls_of_ours`) catches a deprecated call made from our
package, as a warning and as transformers' logged notice, and leaves a library's own deprecations alone."""

from __future__ import annotations

import logging

import pytest
import torch
from deprecations import OUR_CODE, deprecations_from_our_code

from metareward.model.compat import CACHE_NAME, enable_activation_checkpointing, returned_cache, with_cache
from metareward.model.tiny import build_tiny


def as_our_code(source: str):
    """A function compiled as if it lived in src/metareward (the guard tells our frames by their file)."""
    namespace: dict = {}
    exec(compile(source, f"{OUR_CODE}/somewhere.py", "exec"), namespace)  # noqa: S102 - test-only code
    return namespace["call"]


pytestmark = pytest.mark.own_deprecation_guard  # the guard itself is tested here, nested in no other


def test_a_deprecated_call_from_our_package_is_caught_and_one_from_elsewhere_is_not():
    model, _ = build_tiny()
    with deprecations_from_our_code() as found:
        model.gradient_checkpointing_enable()  # from the test itself: not our package
    assert found == []
    with deprecations_from_our_code() as found:
        as_our_code("def call(model):\n    model.gradient_checkpointing_enable()\n")(model)
    assert len(found) == 1 and found[0].startswith("metareward/somewhere.py:2: `gradient_checkpointing_enable`")
    with deprecations_from_our_code() as found:
        as_our_code("def call(model):\n    return model.is_gradient_checkpointing\n")(model)
    assert found and "is_gradient_checkpointing" in found[0]


def test_the_renamed_cache_is_caught_as_an_argument_and_as_an_output_field():
    if CACHE_NAME == "past_key_values":  # transformers before 5.24 has no new name to move to
        return
    model, _ = build_tiny()
    ids = torch.tensor([[1, 2, 3]])
    logging.Logger.warning_once.cache_clear()  # transformers logs each notice once per process
    with deprecations_from_our_code() as found:
        as_our_code("def call(model, ids):\n    return model(input_ids=ids, past_key_values=None, use_cache=True)\n")(
            model, ids
        )
    assert found and "`past_key_values` is deprecated" in found[0]  # a FutureWarning, raised past torch's plumbing
    with deprecations_from_our_code() as found:
        as_our_code("def call(model, ids):\n    return model(input_ids=ids, use_cache=True).past_key_values\n")(
            model, ids
        )
    assert found and "are deprecated. Use `cache` instead" in found[0]  # transformers logs this one


def test_the_compat_names_raise_nothing():
    model, _ = build_tiny()
    ids = torch.tensor([[1, 2, 3]])
    logging.Logger.warning_once.cache_clear()
    with deprecations_from_our_code() as found:
        as_our_code(
            "from metareward.model.compat import *\n"
            "def call(model, ids):\n"
            "    enable_activation_checkpointing(model)\n"
            "    cache = returned_cache(model(input_ids=ids, use_cache=True))\n"
            "    return model(input_ids=ids[:, -1:], use_cache=True, **with_cache(cache))\n"
        )(model, ids)
    assert found == []
    assert returned_cache is not None and with_cache is not None and enable_activation_checkpointing is not None

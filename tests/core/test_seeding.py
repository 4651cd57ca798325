"""derive_seed: stability and distinctness."""

import subprocess
import sys

import pytest

from metareward.core.seeding import derive_seed


def test_regression_value():
    # Computed once with this implementation; a change here breaks resumability of existing runs.
    assert derive_seed(1234, "iter", 2, "actor", "prompt-17") == 5340402996072558415


def test_same_inputs_same_seed_and_range():
    seed = derive_seed(0, "judge", 3)
    assert seed == derive_seed(0, "judge", 3)
    assert 0 <= seed < 2**63


def test_stable_across_processes():
    code = "from metareward.core.seeding import derive_seed; print(derive_seed(7, 'a', 1))"
    outputs = {subprocess.check_output([sys.executable, "-c", code], text=True).strip() for _ in range(2)}
    assert outputs == {str(derive_seed(7, "a", 1))}


def test_any_change_gives_a_different_seed():
    variants = [
        (0,),
        (1,),
        (0, "a"),
        (0, "b"),
        (0, 1),
        (0, "1"),
        (0, "a", "b"),
        (0, "b", "a"),
        (0, "ab"),
        (0, "ab", ""),
        (0, "a", "bc"),
        (0, "ab", "c"),
        (-1,),
        (0, 0),
        (0, 10),
    ]
    seeds = [derive_seed(*v) for v in variants]
    assert len(set(seeds)) == len(variants)


def test_rejects_other_types():
    with pytest.raises(TypeError):
        derive_seed(0, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        derive_seed(0, True)

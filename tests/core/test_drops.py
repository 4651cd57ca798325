"""Selection result convention."""

from metareward.core.drops import Selection, merge_drops


def test_merge_drops_adds_and_sorts():
    merged = merge_drops({"b": 1, "a": 2}, {"a": 3}, {})
    assert merged == {"a": 5, "b": 1}
    assert list(merged) == ["a", "b"]


def test_from_outcomes_splits_items_and_reasons():
    selection = Selection.from_outcomes([1, "x", 2, "y", "x"])
    assert selection.items == (1, 2)
    assert selection.drops == {"x": 2, "y": 1}
    assert selection.num_dropped == 3


def test_selection_copies_inputs_and_merges():
    drops = {"x": 1}
    items = [1]
    selection = Selection(items=items, drops=drops)  # type: ignore[arg-type]
    drops["x"] = 99
    items.append(2)
    assert selection.items == (1,) and selection.drops == {"x": 1}
    combined = selection.merged_with(Selection(items=(3,), drops={"x": 2, "z": 1}))
    assert combined == Selection(items=(1, 3), drops={"x": 3, "z": 1})

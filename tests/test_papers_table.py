"""The paper experiments hold the values docs/papers.md states for them, and every value they set is in its table
with a source: a paper's section, (?) for unconfirmed, or "ours"/"differs" with the reason."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from helpers import REPO_ROOT, compose
from omegaconf import OmegaConf

PAGE = REPO_ROOT / "docs" / "papers.md"
HEADING = "### The paper values and their sources"
EXPERIMENTS = (
    "meta_reward_paper",
    "self_reward_lc_paper",
    "meta_reward_paper_lora",
    "self_reward_lc_paper_lora",
    "self_reward_paper",
)
# An experiment built on another has rows only for what it changes.
INHERITS = {
    "self_reward_lc_paper": "meta_reward_paper",
    "meta_reward_paper_lora": "meta_reward_paper",
    "self_reward_lc_paper_lora": "meta_reward_paper_lora",
}
SOURCES = ("Wu", "Yuan", "(?)", "ours", "differs")


def table_rows() -> dict[str, dict[str, tuple[Any, str]]]:
    """experiment -> setting -> (value, source), read from the table under HEADING."""
    text = PAGE.read_text(encoding="utf-8")
    section = text[text.index(HEADING) :].split("\n\n")
    table = next(block for block in section if block.startswith("| experiment |"))
    rows: dict[str, dict[str, tuple[Any, str]]] = {}
    for line in table.splitlines()[2:]:
        experiment, key, value, source = (cell.strip().strip("`") for cell in line.strip("|").split(" | ", 3))
        assert key not in rows.get(experiment, {}), f"{experiment} {key} has two rows"
        rows.setdefault(experiment, {})[key] = (yaml.safe_load(value), source.strip())
    return rows


ROWS = table_rows()


def stated(experiment: str) -> dict[str, tuple[Any, str]]:
    """The experiment's rows over those of the experiment it is built on."""
    base = INHERITS.get(experiment)
    return {**(stated(base) if base else {}), **ROWS[experiment]}


def composed(experiment: str) -> Any:
    return compose(f"+experiment={experiment}", "trainer=gpu")


def leaves(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix]
    return [leaf for key, value in node.items() for leaf in leaves(value, f"{prefix}{key}.")]


def same(found: Any, stated: Any) -> bool:
    if isinstance(stated, list):
        return isinstance(found, list) and len(found) == len(stated) and all(map(same, found, stated))
    if isinstance(stated, float) or isinstance(found, float):
        return found is not None and stated is not None and math.isclose(float(found), float(stated), rel_tol=1e-12)
    return found == stated


def test_the_table_covers_every_paper_experiment_and_names_a_source_for_each_value() -> None:
    assert set(ROWS) == set(EXPERIMENTS)
    for experiment, rows in ROWS.items():
        for key, (_, source) in rows.items():
            assert source.startswith(SOURCES), f"{experiment} {key}: the source must start with one of {SOURCES}"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_experiment_holds_the_values_its_table_states(experiment: str) -> None:
    cfg = composed(experiment)
    for key, (value, _) in stated(experiment).items():
        found = OmegaConf.select(cfg, key, throw_on_missing=True)
        found = OmegaConf.to_container(found, resolve=True) if OmegaConf.is_config(found) else found
        assert same(found, value), f"{experiment}: {key} is {found!r}, the table says {value!r}"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_value_an_experiment_file_sets_has_a_row(experiment: str) -> None:
    raw = yaml.safe_load((REPO_ROOT / "conf" / "experiment" / f"{experiment}.yaml").read_text(encoding="utf-8"))
    defaults = raw.pop("defaults", [])
    raw.pop("experiment")
    keys = set(ROWS[experiment])
    missing = [leaf.rstrip(".") for leaf in leaves(raw) if leaf.rstrip(".") not in keys]
    assert not missing, f"{experiment} sets {missing} without a row in {PAGE.name}"
    for entry in defaults:
        group = next(iter(entry)).removeprefix("override ").strip("/") if isinstance(entry, dict) else None
        if group is not None:  # a config group the experiment selects: a row names one of its settings
            prefix = group.replace("/", ".") + "."
            assert any(key.startswith(prefix) for key in keys), f"{experiment} selects {group} without a row"


def test_values_compare_by_type_and_length() -> None:
    assert same([0.0, 0.32], [0, 0.32]) and same(5e-6, 5.0e-06) and same("lora", "lora")
    assert not same([2500, None], [2500]) and not same(None, 0.0) and not same(7, 8)

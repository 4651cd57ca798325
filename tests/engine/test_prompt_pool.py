from __future__ import annotations

import json

import pytest

from metareward.engine.prompt_pool import PromptPoolError, load_prompt_pool


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_loads_ids_categories_and_defaults(tmp_path) -> None:
    path = write(
        tmp_path / "p.jsonl",
        [
            json.dumps({"id": "a", "instruction": " Say hi ", "category": "writing"}),
            json.dumps({"instruction": "Add 2+2"}),
        ],
    )
    pool = load_prompt_pool(str(path))
    assert [(p.id, p.instruction, p.category) for p in pool.prompts] == [
        ("a", "Say hi", "writing"),
        ("p-2", "Add 2+2", ""),
    ]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"instruction": "ok"}', "{not json"], r"p.jsonl:2: not valid JSON"),
        (['{"prompt": "x"}'], r"p.jsonl:1: missing the text field 'instruction'"),
        (['{"id": "a", "instruction": "x"}', '{"id": "a", "instruction": "y"}'], r"p.jsonl:2: duplicate id 'a'"),
        (["[1, 2]"], r"p.jsonl:1: expected a JSON object"),
        ([], r"holds no prompts"),
        (['{"instruction": "   "}'], r"no usable prompts"),
    ],
)
def test_bad_files_name_the_file_and_line(tmp_path, lines, message) -> None:
    path = write(tmp_path / "p.jsonl", lines)
    with pytest.raises(PromptPoolError, match=message):
        load_prompt_pool(str(path))


def test_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(PromptPoolError, match="does not exist"):
        load_prompt_pool(str(tmp_path / "nope.jsonl"))


def test_empty_and_too_long_prompts_are_counted(tmp_path) -> None:
    path = write(
        tmp_path / "p.jsonl", ['{"instruction": ""}', '{"instruction": "' + "x" * 50 + '"}', '{"instruction": "ok"}']
    )
    pool = load_prompt_pool(str(path), max_prompt_chars=20)
    assert len(pool.prompts) == 1 and pool.drops == {"empty_instruction": 1, "too_long": 1}


def test_other_file_types_load_through_datasets(tmp_path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("id,instruction\nx,Hello there\ny,Write a poem\n")
    pool = load_prompt_pool(str(path))
    assert [p.id for p in pool.prompts] == ["x", "y"]


def test_iterations_draw_disjoint_prompts_until_the_pool_is_used_up(tmp_path) -> None:
    path = write(tmp_path / "p.jsonl", [json.dumps({"id": str(i), "instruction": f"q{i}"}) for i in range(10)])
    pool = load_prompt_pool(str(path))
    first, second = pool.sample(1, 4, seed=3), pool.sample(2, 4, seed=3)
    assert not {p.id for p in first} & {p.id for p in second}
    assert pool.sample(1, 4, seed=3) == first
    assert pool.sample(1, 4, seed=4) != first
    assert len(pool.sample(3, 4, seed=3)) == 4  # wraps around


def test_skip_policy_counts_bad_lines_instead_of_failing(tmp_path) -> None:
    path = write(
        tmp_path / "p.jsonl",
        [
            '{"id": "a", "instruction": "x"}',
            "{oops",
            '{"prompt": "y"}',
            '{"id": "a", "instruction": "z"}',
            "[3]",
            '{"instruction": "w"}',
        ],
    )
    pool = load_prompt_pool(str(path), on_bad_line="skip")
    assert [p.instruction for p in pool.prompts] == ["x", "w"]
    assert pool.drops == {"malformed_line": 2, "missing_field": 1, "duplicate_id": 1}


def test_fail_policy_names_the_way_out(tmp_path) -> None:
    with pytest.raises(PromptPoolError, match="data.on_bad_line=skip"):
        load_prompt_pool(str(write(tmp_path / "p.jsonl", ["{oops"])))


def test_unknown_policy_is_rejected(tmp_path) -> None:
    with pytest.raises(PromptPoolError, match="data.on_bad_line='ignore'"):
        load_prompt_pool(str(write(tmp_path / "p.jsonl", ['{"instruction": "x"}'])), on_bad_line="ignore")


def test_instruction_suffix_is_part_of_every_stored_instruction(tmp_path) -> None:
    path = write(tmp_path / "p.jsonl", [json.dumps({"id": "a", "instruction": " Say hi "})])
    pool = load_prompt_pool(str(path), instruction_suffix=" Answer briefly.")
    assert [p.instruction for p in pool.prompts] == ["Say hi Answer briefly."]
    assert load_prompt_pool(str(path)).prompts[0].instruction == "Say hi"

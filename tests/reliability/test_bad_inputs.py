"""Bad input is refused before any model loads, with one sentence naming the key or file; good files in every form
editors write are accepted. Checked on `preflight_problems` (what train.py runs before Hydra creates the run
directory) and, for the contract itself (exit code 2, no traceback, no run directory), on real train.py processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT, compose

from metareward.run.preflight import preflight_problems
from metareward.storage.datafiles import MAX_LINE_CHARS

# Each data file the config names: (its config overrides given the file, a valid row).
FILES = {
    "prompts": (lambda p: [f"data.path={p}", "data.prompts_per_iteration=1"], {"id": "a", "instruction": "Say hi."}),
    "eval_prompts": (lambda p: [f"evaluation.data_path={p}", "evaluation.num_prompts=2"], {"instruction": "Say hi."}),
    "references": (
        lambda p: [f"evaluation.data_path={p}", "evaluation.reference_field=output", "evaluation.num_prompts=2"],
        {"instruction": "Say hi.", "output": "Hi!"},
    ),
    "judge_pairs": (
        lambda p: [f"evaluation.judge_quality.data_path={p}", "evaluation.judge_quality.num_pairs=2"],
        {"instruction": "Say hi.", "good": "Hi!", "poor": "No.", "good_score": 5, "poor_score": 1},
    ),
    "ift": (
        lambda p: ["warm_start.enabled=true", f"warm_start.ift_path={p}"],
        {"instruction": "Say hi.", "response": "Hi!"},
    ),
    "eft": (
        lambda p: ["warm_start.enabled=true", f"warm_start.eft_path={p}"],
        {"instruction": "Say hi.", "response": "Hi!", "judgment": "Fine. Score: 4", "score": 4},
    ),
}
TEXT_FIELD = {
    "prompts": "instruction",
    "eval_prompts": "instruction",
    "references": "output",
    "judge_pairs": "good",
    "ift": "response",
    "eft": "judgment",
}
WITH_IDS = ("prompts", "eval_prompts", "judge_pairs")


def problems_for(kind: str, path: Path, tmp_path: Path) -> list[str]:
    overrides, _ = FILES[kind]
    return preflight_problems(compose("+experiment=smoke", *overrides(path), output_dir=tmp_path / "run"))


def bad_files(kind: str, row: dict) -> dict[str, tuple[bytes | None, str]]:
    """name -> (file bytes, or None for a directory; a phrase the one problem must hold)."""
    line = json.dumps(row)
    wrong_type = {**row, TEXT_FIELD[kind]: 7}
    listed = {**row, TEXT_FIELD[kind]: ["a", "b"]}
    files = {
        "binary": (bytes(range(256)) * 8, "not UTF-8 text"),
        "nul_bytes": (b"\x00" * 64 + b"\n", "not a text file"),
        "utf16": ((line + "\n").encode("utf-16"), "not UTF-8 text"),
        "latin1": (json.dumps(row, ensure_ascii=False).replace("Say", "Säy").encode("latin-1") + b"\n", "UTF-8"),
        "number_in_text_field": (json.dumps(wrong_type).encode() + b"\n", "holds a number, not text"),
        "list_in_text_field": (json.dumps(listed).encode() + b"\n", "holds a list, not text"),
        "json_array": (b"[" + line.encode() + b"]\n", "expected a JSON object"),
        "not_json": (b"{instruction: hi}\n", "not valid JSON"),
        "empty": (b"\n\n", "no"),
        "directory": (None, "is a directory"),
        "enormous_line": (json.dumps({**row, "pad": "x" * MAX_LINE_CHARS}).encode(), "longer than"),
    }
    if kind in WITH_IDS:
        files["duplicate_ids"] = ((json.dumps({**row, "id": "a"}) + "\n").encode() * 2, "duplicate id 'a'")
        files["list_id"] = (json.dumps({**row, "id": [1]}).encode() + b"\n", "ids must be text or whole numbers")
    if kind == "judge_pairs":
        files["text_score"] = (json.dumps({**row, "good_score": "high"}).encode() + b"\n", "must be a number")
    return files


CASES = [(kind, name) for kind, (_, row) in FILES.items() for name in bad_files(kind, row)]


@pytest.mark.parametrize(("kind", "shape"), CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_every_bad_file_shape_is_one_problem_naming_the_file(kind: str, shape: str, tmp_path: Path) -> None:
    content, phrase = bad_files(kind, FILES[kind][1])[shape]
    path = tmp_path / "data.jsonl"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    problems = problems_for(kind, path, tmp_path)
    assert len(problems) == 1, problems
    assert str(path) in problems[0] and phrase in problems[0], problems[0]
    assert "\n" not in problems[0]


@pytest.mark.parametrize("kind", list(FILES))
def test_valid_files_in_every_editor_form_are_accepted(kind: str, tmp_path: Path) -> None:
    row = FILES[kind][1]
    forms = {
        "crlf": (json.dumps(row) + "\r\n").encode(),
        "bom": b"\xef\xbb\xbf" + (json.dumps(row) + "\n").encode(),
        "blank_lines": ("\n  \n" + json.dumps(row) + "\n\n\t\n").encode(),
        "no_final_newline": json.dumps(row).encode(),
        "unicode": json.dumps(
            {k: (v + " ☂ é" if isinstance(v, str) and k != "id" else v) for k, v in row.items()}, ensure_ascii=False
        ).encode("utf-8"),
    }
    for form, content in forms.items():
        path = tmp_path / f"{form}.jsonl"
        path.write_bytes(content)
        assert problems_for(kind, path, tmp_path) == [], form


def test_a_pool_smaller_than_one_iteration_and_a_header_only_table_are_refused(tmp_path: Path) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"instruction": f"q{i}"}) + "\n" for i in range(2)))
    cfg = compose("+experiment=smoke", f"data.path={pool}", output_dir=tmp_path / "run")  # draws 3 per iteration
    assert preflight_problems(cfg) == [
        (
            f"data.path={str(pool)!r} holds 2 usable prompts, fewer than one iteration draws "
            "(data.prompts_per_iteration=3); add prompts or lower data.prompts_per_iteration"
        )
    ]
    table = tmp_path / "pool.csv"
    table.write_text("id,instruction\r\n")
    cfg = compose("+experiment=smoke", f"data.path={table}", output_dir=tmp_path / "run")
    assert preflight_problems(cfg) == [f"data.path={str(table)!r} holds a header and no rows; add a row per prompt"]


@pytest.mark.parametrize(
    ("files", "phrase"),
    [
        ({}, "is an empty directory"),
        ({"config.json": "{not json"}, "config.json is not valid JSON"),
        ({"tokenizer.json": "{}", "tokenizer_config.json": "{}"}, "holds a tokenizer but no model"),
        ({"config.json": '{"model_type": "llama"}', "tokenizer.json": "{}"}, "holds no model weights"),
    ],
)
def test_model_directories_that_cannot_load_are_refused(files: dict[str, str], phrase: str, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    for name, text in files.items():
        (model / name).write_text(text)
    problems = preflight_problems(compose("+experiment=smoke", f"model.path={model}", output_dir=tmp_path / "run"))
    assert any(phrase in p for p in problems) and all(p.startswith(f"model.path={str(model)!r}") for p in problems)


def test_every_value_problem_of_a_config_is_reported_at_once(tmp_path: Path) -> None:
    cfg = compose(
        "+experiment=smoke",
        "num_iterations=two",
        "dpo.beta=0",
        "actor.top_p=high",
        "dpo.loss=simpo",
        "evaluation.arena.confidence=1.5",
        "dpo.label_smoothing=0.5",
        "meta_judge.elo_l2=-1",
        output_dir=tmp_path / "run",
    )
    problems = preflight_problems(cfg)
    expected = [
        "num_iterations='two' is not a whole number",
        "actor.top_p='high' is not a number",
        "dpo.beta=0.0 must be > 0",
        "dpo.loss='simpo' names no class; select one with dpo/loss=<name>",
        "evaluation.arena.confidence=1.5 must be in (0, 1)",
        "dpo.label_smoothing=0.5 must be in [0, 0.5)",
        "meta_judge.elo_l2=-1.0 must be >= 0",
    ]
    assert len(problems) == len(expected), problems
    for phrase in expected:
        assert any(phrase in p for p in problems), phrase


OPENAI_EVALUATOR = [
    "evaluation/evaluator=openai",
    "evaluation.evaluator.base_url=http://localhost:8000/v1",
    "evaluation.evaluator.model=m",
]


@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [
        (["pairs.rho_schedule=[0.1,0.2,0.3]"], "pairs.rho_schedule has 3 entries but num_iterations=2"),
        (["meta_judge.max_judgment_chars_schedule=[900,800,700]"], "max_judgment_chars_schedule has 3 entries"),
        (["pairs.max_chosen_chars_schedule=[2500,null,null]"], "max_chosen_chars_schedule has 3 entries"),
        (["pairs.max_chosen_chars_schedule=[0]"], "pairs.max_chosen_chars_schedule entry 0 must be >= 1"),
        (["model.adapters.target_modules=q_proj"], "target_modules='q_proj' is not a list; write it as [q_proj, v"),
        (["pairs.max_chosen_chars_schedule=[long]"], "pairs.max_chosen_chars_schedule entry='long' is not"),
        (["schedule.judge_training_iterations=[1,3]"], "names iteration 3 but num_iterations=2"),
        (["schedule.judge_training_iterations=null"], "schedule.judge_training_iterations is null"),
        (["pairs.rho_schedule=0.3"], "pairs.rho_schedule=0.3 is not a list"),
        (["evaluation.evaluator=gpt"], "evaluation.evaluator='gpt' names no class; select one with"),
        (["judge.score_mode=vibes"], "judge.score_mode='vibes' is not one of"),
        (["pairs.strategy=best"], "pairs.strategy='best' is not one of"),
        ([*OPENAI_EVALUATOR, "evaluation.evaluator.top_logprobs=50"], "top_logprobs=50 must be in [0, 20]"),
        (["dpo.max_prompt_tokens=0"], "dpo.max_prompt_tokens=0 must be >= 1"),
        (["evaluation.num_prompts=0"], "evaluation.num_prompts=0 must be >= 1"),
        (["warm_start.max_prompt_tokens=0"], "warm_start.max_prompt_tokens=0 must be >= 1"),
    ],
)
def test_each_schedule_choice_and_range_problem_is_named(overrides: list[str], phrase: str, tmp_path: Path) -> None:
    problems = preflight_problems(compose("+experiment=smoke", *overrides, output_dir=tmp_path / "run"))
    assert len(problems) == 1 and phrase in problems[0], problems


def test_shipped_experiments_pass_the_preflight(tmp_path: Path) -> None:
    for experiment in ("smoke", "meta_reward", "self_reward"):
        assert preflight_problems(compose(f"+experiment={experiment}", output_dir=tmp_path / experiment)) == []
    # The paper settings draw 5,000 prompts an iteration: the shipped 324-prompt sample is refused, as it should be.
    for experiment in ("meta_reward_paper", "self_reward_paper"):
        problems = preflight_problems(compose(f"+experiment={experiment}", output_dir=tmp_path / experiment))
        assert any("fewer than one iteration draws (data.prompts_per_iteration=5000)" in p for p in problems)


def run_train(*overrides: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(REPO_ROOT / "train.py"), "+experiment=smoke", *overrides]
    return subprocess.run(
        args, check=False, capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "offline"}
    )


def test_refused_runs_exit_2_with_one_line_per_problem_and_create_nothing(tmp_path: Path) -> None:
    """Before: Hydra made the run directory (.hydra/, train.log) before our checks, and under /proc it ended in
    Hydra's traceback."""
    run_dir = Path("/proc/metareward-run")
    done = run_train(f"hydra.run.dir={run_dir}", "num_iterations=two", f"data.path={tmp_path}")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines() == [
        "error: invalid config:",
        "  - num_iterations='two' is not a whole number; set num_iterations to a whole number",
        f"  - data.path={str(tmp_path)!r} is a directory; point it at a JSONL file of prompts",
        (
            f"  - the run directory {run_dir} cannot be created (No such file or directory); "
            "choose another with hydra.run.dir=..."
        ),
    ]
    assert done.stdout == ""


def test_a_refused_run_leaves_no_file_in_its_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    problems = preflight_problems(compose("+experiment=smoke", "dpo.beta=-1", output_dir=run_dir))
    assert problems == ["dpo.beta=-1.0 must be > 0"] and not run_dir.exists()

"""`python -m metareward.export` on a finished tiny run: alpaca_eval's own loader reads the answers, Arena-Hard's
answer file has one line per question, iteration T's adapters are the saved ones, and bad inputs end in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT, compose

from metareward.export.__main__ import main
from metareward.export.checkpoint import load_policy, open_run
from metareward.export.prompts import PromptFileError, load_benchmark_prompts

ALPACA_SET = [
    {"instruction": "Name three fruits.", "output": "Apple, pear.", "generator": "gpt4", "dataset": "helpful_base"},
    {"instruction": "Write a haiku about rain.", "output": "...", "generator": "gpt4", "dataset": "koala"},
    {"instruction": "What is 7 times 8?", "output": "56", "generator": "gpt4", "dataset": "vicuna"},
]
ARENA_QUESTIONS = [
    {"question_id": "328c149ed45a41c0b9d6f14659e63599", "category": "arena-hard-v0.1", "turns": [{"content": "Hi?"}]},
    {"question_id": "b43c07656ead4150b360294ee932b410", "category": "arena-hard-v0.1", "turns": [{"content": "2+2"}]},
    {"question_id": "1f07cf6d146d4038b2b93aaba3935ce0", "category": "arena-hard-v0.1", "turns": [{"content": "Why?"}]},
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished smoke run (one iteration, evaluation callbacks off): adapters in checkpoints/iter_01/."""
    from metareward.run.training import train

    root = tmp_path_factory.mktemp("export_run")
    pool = root / "prompts.jsonl"
    instructions = ["Name three fruits.", "Explain gravity.", "Write a haiku about rain.", "Give three sleep tips."]
    pool.write_text("".join(json.dumps({"instruction": q}) + "\n" for q in instructions))
    off = ("callbacks.win_rate=null", "callbacks.judge_quality=null", "callbacks.dashboard=null")
    train(compose("+experiment=smoke", f"data.path={pool}", "num_iterations=1", *off, output_dir=root / "run"))
    return root / "run"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export_inputs")
    paths = {"alpaca": root / "alpaca_eval.json", "arena": root / "question.jsonl", "ours": root / "heldout.jsonl"}
    paths["alpaca"].write_text(json.dumps(ALPACA_SET, indent=2))
    paths["arena"].write_text("".join(json.dumps(q) + "\n" for q in ARENA_QUESTIONS))
    paths["ours"].write_text((REPO_ROOT / "data" / "eval" / "heldout.jsonl").read_text().splitlines()[0] + "\n")
    return paths


def export(run_dir: Path, iteration: int, prompts: Path, out: Path, *extra: str) -> int:
    argv = ["--run-dir", str(run_dir), "--iteration", str(iteration), "--prompts", str(prompts), "--out", str(out)]
    return main([*argv, "--no-progress", "--allow-cut", *extra])  # the tiny model's answers never end


@pytest.mark.parametrize("iteration", [1, 0])
def test_alpaca_eval_loader_reads_the_model_outputs(
    run_dir: Path, inputs: dict, tmp_path: Path, iteration: int
) -> None:
    from alpaca_eval.utils import get_generator_name, load_or_convert_to_dataframe

    assert export(run_dir, iteration, inputs["alpaca"], tmp_path, "--format", "alpaca_eval") == 0
    frame = load_or_convert_to_dataframe(tmp_path / "model_outputs.json")
    assert set(frame.columns) == {"instruction", "output", "generator", "dataset"}
    assert len(frame) == len(ALPACA_SET)
    assert list(frame["instruction"]) == [row["instruction"] for row in ALPACA_SET]  # alpaca_eval joins on it
    assert list(frame["dataset"]) == [row["dataset"] for row in ALPACA_SET]
    assert get_generator_name(None, frame) == f"smoke-iter{iteration}"
    assert all(isinstance(text, str) for text in frame["output"])
    assert not (tmp_path / "arena_hard_answers.jsonl").exists()
    stats = json.loads((tmp_path / "export_stats.json").read_text())
    assert stats["answered"] == 3 and stats["iteration"] == iteration and stats["prompts_format"] == "alpaca_eval"
    assert stats["role"] == ("actor" if iteration else "seed") and stats["temperature"] == 0.0
    assert stats["max_new_tokens"] == 16  # the smoke run's evaluation.max_new_tokens


def test_our_jsonl_prompts_make_outputs_without_a_dataset(run_dir: Path, inputs: dict, tmp_path: Path) -> None:
    from alpaca_eval.utils import load_or_convert_to_dataframe

    assert export(run_dir, 1, inputs["ours"], tmp_path, "--generator", "mine", "--max-new-tokens", "5") == 0
    frame = load_or_convert_to_dataframe(tmp_path / "model_outputs.json")
    assert set(frame.columns) == {"instruction", "output", "generator"} and list(frame["generator"]) == ["mine"]
    answer = json.loads((tmp_path / "arena_hard_answers.jsonl").read_text())
    assert answer["question_id"] == "eval-0001" and answer["choices"][0]["turns"][0]["token_len"] <= 5


def test_arena_hard_answers_have_one_line_per_question(run_dir: Path, inputs: dict, tmp_path: Path) -> None:
    assert export(run_dir, 1, inputs["arena"], tmp_path, "--format", "arena_hard") == 0
    lines = (tmp_path / "arena_hard_answers.jsonl").read_text().splitlines()
    answers = [json.loads(line) for line in lines]
    assert [a["question_id"] for a in answers] == [q["question_id"] for q in ARENA_QUESTIONS]
    for answer in answers:
        assert {"question_id", "answer_id", "model_id", "choices", "tstamp"} <= set(answer)
        assert answer["model_id"] == "smoke-iter1" and isinstance(answer["tstamp"], float)
        [choice] = answer["choices"]
        assert choice["index"] == 0 and len(choice["turns"]) == 1
        turn = choice["turns"][0]
        assert isinstance(turn["content"], str) and isinstance(turn["token_len"], int) and turn["token_len"] >= 1
        assert answer["conv_metadata"]["token_len"] == turn["token_len"]
    assert len({a["answer_id"] for a in answers}) == len(answers)
    assert not (tmp_path / "model_outputs.json").exists()


def test_iteration_t_answers_with_the_saved_adapters(run_dir: Path) -> None:
    from safetensors.torch import load_file

    run = open_run(run_dir)
    policy, adapters = load_policy(run, 1, max_prompt_tokens=1024, progress=False)
    saved = load_file(str(run_dir / "checkpoints" / "iter_01" / "actor" / "adapter_model.safetensors"))
    loaded = {n.replace(".actor.", "."): p for n, p in adapters.model.named_parameters() if ".actor." in n}
    assert saved and set(saved) == set(loaded)
    for name, tensor in saved.items():
        assert torch.equal(loaded[name].detach().cpu(), tensor), name
    assert any(tensor.abs().sum() > 0 for name, tensor in saved.items() if "lora_B" in name)  # trained, not fresh
    ids = torch.tensor([policy.tokenizer("Name three fruits.")["input_ids"]])
    with torch.no_grad(), policy.lend("actor") as model:
        actor_logits = model(input_ids=ids).logits
    with torch.no_grad(), policy.lend("seed") as model:
        seed_logits = model(input_ids=ids).logits
    assert not torch.allclose(actor_logits, seed_logits)  # iteration 1's actor is not M0


def test_a_full_fine_tuning_run_exports_its_whole_models(tmp_path: Path, inputs: dict[str, Path]) -> None:
    from metareward.run.training import train

    pool = tmp_path / "prompts.jsonl"
    pool.write_text("".join(json.dumps({"instruction": q}) + "\n" for q in ["Name three fruits.", "Explain rain."] * 2))
    off = ("callbacks.win_rate=null", "callbacks.judge_quality=null", "callbacks.dashboard=null")
    overrides = ("+experiment=smoke", f"data.path={pool}", "num_iterations=1", "model.finetune=full", *off)
    trained = train(compose(*overrides, output_dir=tmp_path / "run")).module.model
    run = open_run(tmp_path / "run")
    assert run.full() and run.saved_iterations() == [1]
    ids = torch.tensor([[5, 6, 7, 8]])
    logits = {}
    for iteration in (0, 1):
        policy, _ = load_policy(run, iteration, max_prompt_tokens=1024, progress=False)
        with torch.no_grad(), policy.lend("actor") as model:
            logits[iteration] = model(input_ids=ids).logits
    with torch.no_grad():
        assert torch.allclose(logits[1], trained(input_ids=ids).logits, atol=1e-5)  # iteration 1: the trained model
    assert not torch.allclose(logits[0], logits[1])  # iteration 0: M0
    assert export(tmp_path / "run", 1, inputs["ours"], tmp_path / "out") == 0
    assert (tmp_path / "out").is_dir() and any((tmp_path / "out").iterdir())


def test_answers_cut_at_the_token_limit_are_refused_unless_asked_for(
    run_dir: Path, inputs, tmp_path: Path, capsys
) -> None:
    argv = ["--run-dir", str(run_dir), "--iteration", "1", "--prompts", str(inputs["alpaca"]), "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "refused"), "--max-new-tokens", "4"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: 3 of 3 answers hit --max-new-tokens=4 before they ended") and "--allow-cut" in error
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())  # nothing half-written
    assert main([*argv, "--out", str(tmp_path / "allowed"), "--max-new-tokens", "4", "--allow-cut"]) == 0
    assert json.loads((tmp_path / "allowed" / "export_stats.json").read_text())["unfinished"] == 3


def test_a_prompt_over_the_limit_is_skipped_and_counted(run_dir: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"id": "short", "instruction": "Hi."}, {"id": "long", "instruction": "word " * 200}]
    prompts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert export(run_dir, 1, prompts, tmp_path / "out", "--max-prompt-tokens", "64") == 0
    outputs = json.loads((tmp_path / "out" / "model_outputs.json").read_text())
    assert [row["instruction"] for row in outputs] == ["Hi."]
    stats = json.loads((tmp_path / "out" / "export_stats.json").read_text())
    assert stats["dropped"] == {"prompt_too_long": 1} and stats["dropped_ids"]["prompt_too_long"] == ["long"]
    assert stats["prompts"] == 2 and stats["answered"] == 1


def test_a_missing_iteration_ends_in_one_line_and_exit_code_2(run_dir: Path, inputs: dict, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "metareward.export", "--run-dir", str(run_dir), "--iteration", "2"]
    command += ["--prompts", str(inputs["alpaca"]), "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert errors == [line for line in run.stderr.splitlines() if "iteration" in line]
    assert len(errors) == 1 and "iterations with saved adapters: 1" in errors[0] and "iter_02" in errors[0]
    assert not (tmp_path / "model_outputs.json").exists()


def test_the_command_line_export_prints_its_report_and_no_library_notices(
    run_dir: Path, inputs: dict, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "metareward.export", "--run-dir", str(run_dir), "--iteration", "1"]
    command += ["--prompts", str(inputs["alpaca"]), "--out", str(tmp_path), "--allow-cut"]  # the tiny model's answers
    run = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Warning" not in run.stderr, run.stderr  # PEFT's own call of a renamed transformers property was shown
    assert (tmp_path / "model_outputs.json").is_file()


BAD_FILES = {
    "not_a_list.json": ('[{"instruction": "a"}, 3]', "item 2: expected a JSON object"),
    "no_instruction.json": ('[{"prompt": "a"}]', "missing the text field 'instruction'"),
    "broken.json": ('[{"instruction": "a"},', "not valid JSON"),
    "empty.jsonl": ("\n", "holds no prompts"),
    "number.jsonl": ('{"instruction": 5}\n', "the field 'instruction' holds a number"),
    "no_content.jsonl": ('{"question_id": "q1", "turns": [{"text": "a"}]}\n', "turns[0]: missing the text field"),
    "no_turns.jsonl": ('{"question_id": "q1", "turns": []}\n', "`turns` must be a list of objects"),
    "duplicate.jsonl": ('{"id": "a", "instruction": "x"}\n{"id": "a", "instruction": "y"}\n', "repeats the id 'a'"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_prompt_file_ends_in_one_line(run_dir: Path, tmp_path: Path, capsys, name: str) -> None:
    text, expected = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PromptFileError, match=expected.replace("[", r"\[").replace("(", r"\(")):
        load_benchmark_prompts(path)
    assert export(run_dir, 1, path, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_every_problem_is_reported_at_once(tmp_path: Path, capsys) -> None:
    argv = ["--run-dir", str(tmp_path / "none"), "--iteration", "1", "--prompts", str(tmp_path / "none.json")]
    assert main([*argv, "--out", str(tmp_path / "out"), "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert "--run-dir=" in err and "is not a directory" in err
    assert "--prompts=" in err and "does not exist" in err and "--batch-size=0 must be at least 1" in err


def test_a_directory_that_is_no_run_is_refused(tmp_path: Path, inputs: dict, capsys) -> None:
    assert export(tmp_path, 0, inputs["alpaca"], tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert "holds no run_config.yaml" in err and len(err.splitlines()) == 1

"""A judge prompt (templates, final lines, score scale) is one config choice, `judge/prompt=<name>`: a new one is one
YAML file, or one class plus one YAML file, here written into a temporary config directory added to Hydra's search
path; nothing else is edited. The chosen prompt reaches every place that renders, parses or reads a judgment, and a
bad one is reported with every other config problem, one line each, before any model loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from helpers import compose, config_problems
from hydra.errors import MissingConfigException

from metareward.config.build import build_settings
from metareward.core.prompts import ADDITIVE_FIVE_POINT, JudgePrompt, JudgePromptError
from metareward.engine.judging import choice_contexts, read_scores, read_verdicts, score_line, winner_line

# A whole prompt in one YAML file: a 1-3 scale whose lines are "Rating: N" and "Verdict: Judgment A|B".
TERSE_YAML = """\
_target_: metareward.core.prompts.JudgePrompt
min_score: 1
max_score: 3
score_label: Rating
winner_label: Verdict
judge_template: |-
  Rate this answer from {min_score} (poor) to {max_score} (excellent).
  Question: {instruction}
  Answer: {response}
  Give one reason, then end with "{score_label}: <number>".
meta_judge_template: |-
  Two ratings of one answer on a {min_score}-{max_score} scale.
  Question: {instruction}
  Answer: {response}
  Judgment A: {judgment_a}
  Judgment B: {judgment_b}
  Which rating is fairer? End with "{winner_label}: Judgment A" or "{winner_label}: Judgment B".
"""


class CriterionPrompt(JudgePrompt):
    """A pass/fail judge of one criterion (0 or 1): the class writes the templates from the criterion it is given."""

    def __init__(self, criterion: str) -> None:
        super().__init__(
            judge_template=f"Does the answer {criterion}?\n{{instruction}}\n{{response}}\nEnd with 'Score: <0 or 1>'.",
            meta_judge_template=(
                f"Which judgment tells better whether the answer {criterion}?\n{{instruction}}\n{{response}}\n"
                "A: {judgment_a}\nB: {judgment_b}\nEnd with 'Winner: Judgment A' or 'Winner: Judgment B'."
            ),
            min_score=0,
            max_score=1,
            score_label="Score",
            winner_label="Winner",
        )


CRITERION_YAML = f"_target_: {__name__}.CriterionPrompt\ncriterion: cites a source\n"


def config_dir(tmp_path: Path, files: dict[str, str]) -> str:
    """A config directory holding `files` (path -> YAML text), as the override adding it to Hydra's search path."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return f"hydra.searchpath=[file://{tmp_path}]"


def test_a_new_prompt_is_one_yaml_file(tmp_path: Path) -> None:
    search = config_dir(tmp_path, {"judge/prompt/terse.yaml": TERSE_YAML})
    prompt = build_settings(compose("+experiment=smoke", search, "judge/prompt=terse")).engine.judge_prompt
    assert (prompt.min_score, prompt.max_score, prompt.score_choices) == (1, 3, ("1", "2", "3"))
    assert prompt.render_judge(" Why? ", "Because.\n") == (
        "Rate this answer from 1 (poor) to 3 (excellent).\nQuestion: Why?\nAnswer: Because.\n"
        'Give one reason, then end with "Rating: <number>".'
    )
    assert prompt.render_meta_judge("Q", "R", "ja", "jb").endswith('"Verdict: Judgment A" or "Verdict: Judgment B".')
    assert [prompt.parse_score(f"Fine.\nRating: {k}") for k in (0, 1, 3, 4)] == [None, 1.0, 3.0, None]
    assert prompt.parse_score("Score: 2") is None  # the line is the prompt's, not the default's
    assert prompt.parse_winner("Close call.\n**Verdict:** Judgment B") == "B"
    assert (prompt.score_cue, prompt.winner_cue) == ("Rating:", "Verdict: Judgment")


def test_a_new_prompt_is_one_class_and_one_yaml_file(tmp_path: Path) -> None:
    search = config_dir(tmp_path, {"judge/prompt/criterion.yaml": CRITERION_YAML})
    prompt = build_settings(compose("+experiment=smoke", search, "judge/prompt=criterion")).engine.judge_prompt
    assert isinstance(prompt, CriterionPrompt) and prompt.score_choices == ("0", "1")
    assert prompt.render_judge("Q?", "A.").startswith("Does the answer cites a source?\nQ?\nA.")
    assert prompt.parse_score("No source.\nScore: 0") == 0.0 and prompt.parse_score("Score: 4") is None


def test_the_shipped_ten_point_prompt_reaches_the_engine_settings() -> None:
    settings = build_settings(compose("+experiment=smoke", "judge/prompt=ten_point", "judge.score_mode=parse"))
    prompt = settings.engine.judge_prompt
    assert (prompt.min_score, prompt.max_score, len(prompt.score_choices)) == (0, 10, 11)
    rendered = prompt.render_judge("How far is the Moon?", "About 384,000 km.")
    assert "from 0 to 10" in rendered and "About 384,000 km." in rendered and "{" not in rendered
    assert prompt.parse_score("Accurate and brief.\nScore: 10") == 10.0 and prompt.parse_score("Score: 11") is None
    assert prompt.parse_score("Score: 8/10") == 8.0 and prompt.parse_score("Score: 4/5") is None
    assert prompt.parse_winner(prompt.render_meta_judge("", "", "", "")) is None  # the template is no verdict
    default = build_settings(compose("+experiment=smoke")).engine.judge_prompt
    assert default == ADDITIVE_FIVE_POINT


def test_reads_follow_the_prompts_lines_and_scale(tmp_path: Path) -> None:
    search = config_dir(tmp_path, {"judge/prompt/terse.yaml": TERSE_YAML})
    prompt = build_settings(compose("+experiment=smoke", search, "judge/prompt=terse")).engine.judge_prompt
    texts = ["Clear.\nRating: 3", "Vague.\n**Rating:** two", "Score: 2"]
    contexts = choice_contexts(["<p>"] * 3, texts, "hybrid", score_line(prompt))
    assert contexts == {1: "<p>Vague.\nRating: ", 2: "<p>Score: 2\nRating: "}  # only its own line is cut
    readings = read_scores(texts, "hybrid", {1: np.array([0.5, 0.0, 0.5]), 2: np.eye(3)[1]}, prompt)
    assert [r.value for r in readings] == [3.0, 2.0, 2.0]  # 0.5 * 1 + 0.5 * 3
    assert readings[1].text == "Vague.\nRating: 1" and readings[2].text == "Score: 2\nRating: 2"
    line = winner_line(prompt.winner_label, prompt.winner_cue)  # the meta-judge's line of this prompt
    verdicts = read_verdicts(["A is fairer.\nVerdict: Judgment A", "Hmm"], "hybrid", {1: np.array([0.3, 0.7])}, line)
    assert [v.value for v in verdicts] == [1.0, -1.0] and verdicts[1].text == "Hmm\nVerdict: Judgment B"
    assert line.choices == ("A", "B") and line.cue == "Verdict: Judgment"


def test_eft_rows_and_the_score_histogram_use_the_prompts_scale() -> None:
    from metareward.evaluation.plots import score_histogram_figure
    from metareward.sft.formatting import eft_example

    ten = build_settings(compose("+experiment=smoke", "judge/prompt=ten_point")).engine.judge_prompt
    row = {"instruction": "Q?", "response": "A.", "judgment": "Complete.", "score": 9}
    assert eft_example(row, ADDITIVE_FIVE_POINT) == "bad_score"
    example = eft_example(row, ten)
    assert example.completion == "Complete.\nScore: 9" and example.prompt == ten.render_judge("Q?", "A.")  # type: ignore[union-attr]
    axes = score_histogram_figure({1: [0.0, 9.5, 10.0]}, ten).axes[0]
    assert axes.patches and axes.get_xlim()[1] >= 10.0


class Recording:
    """A stand-in policy's record of what the judging phases asked: prompts, cues and choices."""

    def __init__(self) -> None:
        self.prompts: dict[str, list[str]] = {}
        self.cues: list[tuple[str, tuple[str, ...]]] = []


def test_the_data_engine_renders_and_reads_with_the_chosen_prompt(prompt_file: Path, tmp_path: Path) -> None:
    from metareward.engine.iteration import make_iteration_data
    from metareward.engine.prompt_pool import load_prompt_pool
    from metareward.generation.policy import Policy
    from metareward.model.adapters import AdapterSpec, RoleAdapters
    from metareward.model.tiny import build_tiny

    @dataclass
    class RecordingPolicy(Policy):
        seen: Recording = field(default_factory=Recording)

        def generate(self, role, requests, settings, desc, cue=None, max_prompt_tokens=None):
            self.seen.prompts.setdefault(role, []).extend(r.prompt for r in requests)
            return super().generate(role, requests, settings, desc, cue, max_prompt_tokens)

        def cue_read(self, cue_text, choices):
            self.seen.cues.append((cue_text, tuple(choices)))
            return super().cue_read(cue_text, choices)

    search = config_dir(tmp_path / "conf", {"judge/prompt/terse.yaml": TERSE_YAML})
    cfg = compose("+experiment=smoke", f"data.path={prompt_file}", search, "judge/prompt=terse")
    settings = build_settings(cfg).engine
    model, tokenizer = build_tiny()
    policy = RecordingPolicy(
        RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tokenizer, settings.max_prompt_tokens, False
    )
    make_iteration_data(policy, settings, load_prompt_pool(str(prompt_file)), 1, tmp_path / "run")
    seen = policy.seen
    assert seen.prompts["judge"] and all("Rate this answer from 1 (poor) to 3" in p for p in seen.prompts["judge"])
    assert seen.prompts["meta_judge"] and all("Two ratings of one answer" in p for p in seen.prompts["meta_judge"])
    assert seen.cues == [("Rating: ", ("1", "2", "3")), ("Verdict: Judgment ", ("A", "B"))]
    folder = tmp_path / "run" / "iterations" / "iter_01"
    judgments = [json.loads(line) for line in (folder / "judgments.jsonl").read_text().splitlines()]
    assert judgments and all(1.0 <= j["score"] <= 3.0 for j in judgments if j["score"] is not None)
    assert all(j["text"].rstrip().rsplit("\n", 1)[-1].startswith("Rating: ") for j in judgments)


def test_a_bad_prompt_names_each_problem() -> None:
    fields = {"score_label": "Score", "winner_label": "Winner"}
    with pytest.raises(JudgePromptError) as error:
        JudgePrompt("Rate {instruction} {answer}.", "{instruction}", min_score=3, max_score=3, **fields)
    assert error.value.problems == [
        "min_score=3 must be below max_score=3",
        "judge_template does not show {response}",
        (
            "judge_template has the unknown field(s) {answer}; it may use {instruction}, {response}, {min_score}, "
            "{max_score}, {score_label}, {winner_label} (a literal brace is doubled)"
        ),
        "meta_judge_template does not show {response}, {judgment_a}, {judgment_b}",
    ]
    judge = ADDITIVE_FIVE_POINT.judge_template
    meta = ADDITIVE_FIVE_POINT.meta_judge_template
    with pytest.raises(JudgePromptError, match="judge_template never asks for the final 'Grade: <score>' line"):
        JudgePrompt(judge, meta, 0, 5, score_label="Grade", winner_label="Winner")
    with pytest.raises(JudgePromptError, match="reads as a score itself"):
        JudgePrompt(judge + "\nScore: 5", meta, 0, 5, **fields)
    with pytest.raises(JudgePromptError, match=r"min_score='low' is not a whole number"):
        JudgePrompt(judge, meta, "low", 5, **fields)  # type: ignore[arg-type]
    with pytest.raises(JudgePromptError, match="score_label='Score:' must be one or more words of letters"):
        JudgePrompt(judge, meta, 0, 5, score_label="Score:", winner_label="Winner")


def test_bad_prompt_values_are_config_problems_reported_with_the_others(tmp_path: Path) -> None:
    ten = "judge/prompt=ten_point"
    assert config_problems("+experiment=smoke", ten, "judge.prompt.min_score=10") == [
        "judge.prompt.min_score=10 must be below max_score=10"
    ]
    problems = config_problems("+experiment=smoke", ten, 'judge.prompt.judge_template="{response} only"', "dpo.lr=0")
    assert problems == ["judge.prompt.judge_template does not show {instruction}", "dpo.lr=0.0 must be > 0"]
    problems = config_problems("+experiment=smoke", ten, "judge.prompt.max_score=0", "num_iterations=two")
    assert (
        problems[0].startswith("num_iterations='two'")
        and "judge.prompt.min_score=0 must be below max_score=0" in problems
    )
    assert config_problems("+experiment=smoke", "judge.prompt._target_=builtins.dict") == [
        "judge.prompt: builtins.dict is not a metareward.core.prompts.JudgePrompt"
    ]
    (bare,) = config_problems("+experiment=smoke", "judge.prompt=ten_point")
    assert bare.startswith("judge.prompt='ten_point' names no class") and "select one with judge/prompt=<name>" in bare


def test_an_unknown_prompt_is_refused_by_hydra_with_the_options() -> None:
    with pytest.raises(MissingConfigException, match="Could not find 'judge/prompt/eleven_point'") as error:
        compose("+experiment=smoke", "judge/prompt=eleven_point")
    assert "Available options in 'judge/prompt'" in str(error.value) and "ten_point" in str(error.value)


def test_a_prompt_whose_scores_the_tokenizer_cannot_read_is_refused_in_one_line_before_training(
    prompt_file: Path, tmp_path: Path
) -> None:
    """ "10" is two tokens for the tiny model's tokenizer (and SmolLM2's): probability reads of ten_point are refused
    once the tokenizer is loaded, before any generation; parse mode still needs the evaluations' reads."""
    import subprocess

    from helpers import smoke_train_command

    def run(name: str, *overrides: str) -> subprocess.CompletedProcess:
        command = smoke_train_command(prompt_file, tmp_path / name, "judge/prompt=ten_point", "logger=none", *overrides)
        return subprocess.run(command, cwd=tmp_path, check=False, capture_output=True, text=True, timeout=300)

    hybrid = run("hybrid")
    assert hybrid.returncode == 2 and "Traceback" not in hybrid.stderr
    message = hybrid.stderr.strip().splitlines()[-1]
    assert "'10'" in message and "judge/prompt" in message and "evaluations" in message
    assert not list((tmp_path / "hybrid").rglob("responses.jsonl"))
    parsed = run("parse", "judge.score_mode=parse", "callbacks.judge_quality=null", "evaluation.seed_judge=false")
    assert parsed.returncode == 0, parsed.stderr[-2000:]

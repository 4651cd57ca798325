"""The evaluator is a component: a class named by `_target_` in one YAML file of `conf/evaluation/evaluator/`, selected
with `evaluation/evaluator=<name>`. A new one is one class plus one YAML file, here written into a temporary config
directory added to Hydra's search path; nothing else is edited. It is checked with the rest of the config, built by
the win-rate callback as the run builds it, and gives figures. Also: the shipped evaluators build as configured and
every bad evaluator is reported, one line each, before any model loads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import compose, config_problems
from hydra.errors import MissingConfigException
from hydra.utils import instantiate

from metareward.config.build import build_settings
from metareward.evaluation.evaluators import (
    BackendEvaluator,
    ModelEvaluator,
    OpenAIChatEvaluator,
    PreferenceEvaluator,
)
from metareward.evaluation.runner import win_rate_report
from metareward.evaluation.settings import build_evaluator
from metareward.lightning.handoff import RunContext
from metareward.run.preflight import preflight_problems


@dataclass
class ShorterAnswerEvaluator(PreferenceEvaluator):
    """Prefers the shorter answer: P(A better) = 1 / (1 + exp((len(a) - len(b)) / characters))."""

    characters: float
    name: str = "shorter"

    def __post_init__(self) -> None:
        if not self.characters > 0:
            raise ValueError(f"characters must be > 0, got {self.characters}")

    def prefer_many(self, comparisons: Sequence[tuple[str, str, str]]) -> list[float]:
        return [1.0 / (1.0 + math.exp((len(a) - len(b)) / self.characters)) for _, a, b in comparisons]


SHORTER_YAML = f"_target_: {__name__}.ShorterAnswerEvaluator\ncharacters: 10\n"


def config_dir(tmp_path: Path) -> str:
    """conf/evaluation/evaluator/shorter.yaml in a temporary config directory, as the override that adds it to
    Hydra's search path."""
    folder = tmp_path / "evaluation" / "evaluator"
    folder.mkdir(parents=True)
    (folder / "shorter.yaml").write_text(SHORTER_YAML)
    return f"hydra.searchpath=[file://{tmp_path}]"


@pytest.mark.parametrize("how", ["yaml", "command_line"])
def test_a_new_evaluator_is_one_class_and_one_yaml_file(how: str, tmp_path: Path) -> None:
    if how == "yaml":
        overrides = [config_dir(tmp_path / "conf"), "evaluation/evaluator=shorter"]
    else:  # or no file at all: the _target_ and its parameter on the command line, the seed's removed
        overrides = [
            f"evaluation.evaluator._target_={__name__}.ShorterAnswerEvaluator",
            "~evaluation.evaluator.batch_size",
            "~evaluation.evaluator.max_prompt_tokens",
            "+evaluation.evaluator.characters=10",
        ]
    cfg = compose("+experiment=smoke", *overrides, output_dir=tmp_path / "run")
    settings = build_settings(cfg)  # the config check accepts it
    # The win-rate callback builds it from its node, as the run does; attaching a backend changes nothing here.
    context = RunContext.for_run(tmp_path / "run", settings.generation, settings.engine)
    callback = instantiate(cfg.callbacks.win_rate, context=context)
    evaluator = callback.spec.attach(context)
    assert isinstance(evaluator, ShorterAnswerEvaluator) and evaluator.characters == 10
    prompts = callback.prompts[:2]
    answers, baseline = ["Yes.", "A much longer answer than the other one."], ["Yes, certainly: yes.", "No."]
    figures, rows = win_rate_report(prompts, answers, baseline, evaluator, callback.arena)
    # Prompt 1: 4 against 20 characters, p = 1 / (1 + e^-1.6) in both orders; prompt 2: 40 against 3, e^3.7.
    expected = [1 / (1 + math.exp(-1.6)), 1 / (1 + math.exp(3.7))]
    assert [row["preference"] for row in rows] == pytest.approx(expected)
    assert figures["win_rate"] == pytest.approx(100 * sum(expected) / 2)
    assert figures["evaluator_prefers_first"] == pytest.approx(0.5)  # it has no position bias


def test_a_new_evaluators_parameters_are_checked_up_front(tmp_path: Path) -> None:
    search = config_dir(tmp_path)
    selected = ("+experiment=smoke", search, "evaluation/evaluator=shorter")
    assert config_problems(*selected, "evaluation.evaluator.characters=0") == [
        f"evaluation.evaluator: {__name__}.ShorterAnswerEvaluator refused its parameters: characters must be > 0, got 0"
    ]
    (problem,) = config_problems(*selected, "~evaluation.evaluator.characters")
    assert problem.startswith(f"evaluation.evaluator: {__name__}.ShorterAnswerEvaluator does not accept these")
    assert "characters" in problem


OPENAI = ("evaluation/evaluator=openai", "evaluation.evaluator.base_url=http://localhost:8000/v1")


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            ["evaluation.evaluator=openai"],
            (
                "evaluation.evaluator='openai' names no class; select one with evaluation/evaluator=<name> "
                "(a YAML file in conf/evaluation/evaluator/)"
            ),
        ),
        (["evaluation/evaluator=model"], "evaluation.evaluator.path is not set: the model evaluator needs a local"),
        ([*OPENAI], "evaluation.evaluator.model is not set: the openai evaluator needs the name of the model"),
        ([*OPENAI, "evaluation.evaluator.model=m", "evaluation.evaluator.timeout_s=0"], "timeout_s=0.0 must be > 0"),
        (["evaluation.evaluator.batch_size=0"], "evaluation.evaluator.batch_size=0 must be >= 1"),
        (["evaluation.evaluator._target_=no_such_package.Evaluator"], "does not import (No module named"),
        (["+evaluation.evaluator.role=judge", "+evaluation.evaluator.temperature=1"], "does not accept these"),
        (["evaluation.evaluator._target_=builtins.dict"], "is not a metareward.evaluation.evaluators.Preference"),
    ],
)
def test_each_bad_evaluator_is_one_named_problem(overrides: list[str], problem: str) -> None:
    problems = config_problems("+experiment=smoke", *overrides)
    assert len(problems) == 1 and problem in problems[0], problems


def test_every_evaluator_problem_is_reported_with_every_other_one(tmp_path: Path) -> None:
    cfg = compose(
        "+experiment=smoke",
        "evaluation/evaluator=openai",
        "evaluation.evaluator.top_logprobs=50",
        "evaluation.evaluator.max_tokens=0",
        "dpo.beta=0",
        output_dir=tmp_path / "run",
    )
    assert sorted(preflight_problems(cfg)) == [
        "dpo.beta=0.0 must be > 0",
        "evaluation.evaluator.base_url is not set: the openai evaluator needs the endpoint's address (http://host:port/v1)",
        "evaluation.evaluator.max_tokens=0 must be >= 1",
        "evaluation.evaluator.model is not set: the openai evaluator needs the name of the model the endpoint serves",
        "evaluation.evaluator.top_logprobs=50 must be in [0, 20]",
    ]


def test_an_unknown_evaluator_is_refused_by_hydra_with_the_options() -> None:
    with pytest.raises(MissingConfigException, match="Could not find 'evaluation/evaluator/gpt'") as error:
        compose("+experiment=smoke", "evaluation/evaluator=gpt")
    assert "Available options in 'evaluation/evaluator'" in str(error.value) and "openai" in str(error.value)


def test_shipped_evaluators_build_as_configured(tmp_path: Path) -> None:
    seed = build_evaluator(compose("+experiment=smoke").evaluation.evaluator)
    assert seed == BackendEvaluator(batch_size=32, max_prompt_tokens=2048) and seed.backend is None
    backend = object()
    assert seed.attach(backend).backend is backend  # type: ignore[arg-type]
    openai = build_evaluator(compose(*OPENAI, "evaluation.evaluator.model=m").evaluation.evaluator)
    assert openai == OpenAIChatEvaluator("http://localhost:8000/v1", "m", "OPENAI_API_KEY", 1, 5, 60)
    assert openai.attach(backend) is openai  # type: ignore[arg-type]
    path = tmp_path / "no_model_here"
    model = build_evaluator(
        compose("evaluation/evaluator=model", f"evaluation.evaluator.path={path}").evaluation.evaluator
    )
    assert isinstance(model, ModelEvaluator) and model.path == str(path) and model.dtype == "auto"
    assert "reader" not in vars(model), "the model is loaded at the first comparison, not when it is built"


def test_a_model_evaluators_local_directory_is_checked_before_any_model_loads(tmp_path: Path) -> None:
    empty = tmp_path / "judge_model"
    empty.mkdir()
    cfg = compose(
        "+experiment=smoke", "evaluation/evaluator=model", f"evaluation.evaluator.path={empty}", output_dir=tmp_path
    )
    (problem,) = preflight_problems(cfg)
    assert problem == (
        f"evaluation.evaluator.path={str(empty)!r} is an empty directory; point it at a saved model (config.json, "
        "weights and tokenizer)"
    )

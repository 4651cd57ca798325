"""Every experiment composes and validates; bad values are all reported at once, naming their keys."""

from __future__ import annotations

import re

import pytest
from helpers import REPO_ROOT, compose, config_problems
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from metareward.config import build
from metareward.config.build import GROUPS, ConfigError, RunSettings, build_settings
from metareward.core import actor_pairs, losses
from metareward.generation.sampler import SamplingSettings
from metareward.run import preflight, training
from metareward.schema.rules import rules_of

# Every experiment composed and validated with every trainer, and the paper values: tests/test_experiments.py.


def test_user_facing_keys_reach_the_settings() -> None:
    s = build_settings(
        compose(
            "num_iterations=3",
            "seed=7",
            "data.prompts_per_iteration=5",
            "actor.num_responses=6",
            "judge.num_judgments=4",
            "pairs.rho=0.25",
        )
    )
    assert (s.num_iterations, s.seed, s.engine.prompts_per_iteration) == (3, 7, 5)
    assert (s.engine.num_responses, s.engine.num_judgments, s.engine.rho) == (6, 4, 0.25)


def test_all_problems_are_reported_in_one_error() -> None:
    cfg = compose("pairs.rho=1.5", "actor.num_responses=1", "judge.score_mode=guess", "actor.top_p=0", "dpo.lr=0")
    with pytest.raises(ConfigError) as error:
        build_settings(cfg)
    message = str(error.value)
    for key in ("pairs.rho=1.5", "actor.num_responses=1", "judge.score_mode='guess'", "top_p", "dpo.lr=0"):
        assert key in message


def test_meta_judge_needs_two_judgments() -> None:
    with pytest.raises(ConfigError, match="judge.num_judgments=1 must be at least 2"):
        build_settings(compose("judge.num_judgments=1"))


def test_unknown_builtin_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="builtin:smollm2-135m-instruct"):
        build_settings(compose("model.path=builtin:nonexistent"))


def test_missing_local_model_directory_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="is not an existing directory"):
        build_settings(compose(f"model.path={tmp_path / 'missing'}"))


def test_dpo_completion_limit_must_fit_every_answer_and_unfinished_policy_is_known() -> None:
    with pytest.raises(ConfigError) as error:
        build_settings(compose("actor.max_new_tokens=300", "judge.max_new_tokens=400", "pairs.unfinished=cut"))
    message = str(error.value)
    assert "dpo.max_completion_tokens=256 is below actor.max_new_tokens=300" in message
    assert "below judge.max_new_tokens=400" in message
    assert "pairs.unfinished='cut' is not one of ['drop', 'keep']" in message
    # Without judge training, the judge's answers are never trained: only the actor's limit counts.
    build_settings(compose("judge.max_new_tokens=400", "schedule.judge_training_iterations=[]"))
    assert build_settings(compose()).engine.unfinished == "drop"


def test_max_epochs_is_num_iterations_and_set_only_through_it() -> None:
    assert compose("+experiment=smoke", "num_iterations=3").trainer.max_epochs == 3
    assert config_problems("+experiment=smoke", "trainer.max_epochs=5") == [
        "trainer.max_epochs=5 differs from num_iterations=2: each iteration is one epoch, so set num_iterations instead"
    ]


def every_rule() -> list[tuple[str, object]]:
    """(config key, rule) of every setting the run reads, off the settings dataclasses' fields."""
    return [*rules_of(RunSettings), *(rule for cls, prefix in GROUPS.values() for rule in rules_of(cls, prefix))]


def test_each_setting_has_one_rule_stated_beside_its_field() -> None:
    keys = [key for key, _ in every_rule()]
    assert sorted(key for key in set(keys) if keys.count(key) > 1) == []
    rules = dict(every_rule())
    # rho: core's rule, which its pair selectors guard with too, checks pairs.rho and every schedule entry.
    assert rules["pairs.rho"] is actor_pairs.RHO and rules["pairs.rho_schedule"].entry is actor_pairs.RHO
    assert config_problems("pairs.rho=0.6") == [actor_pairs.RHO.range_problem("pairs.rho=0.6")]
    with pytest.raises(ValueError, match=r"rho must lie in \[0, 0.5\]"):
        actor_pairs.select_length_controlled([], rho=0.6)
    # beta: the losses' rule, which their constructors guard with, checks dpo.beta.
    assert rules["dpo.beta"] is losses.BETA and rules["dpo.label_smoothing"] is losses.LABEL_SMOOTHING
    with pytest.raises(ValueError, match=f"beta must be {losses.BETA.describe()}"):
        losses.DPOLoss(0.0)
    # Token limits: every role's and the evaluation's max_new_tokens is SamplingSettings' one field.
    (new_tokens,) = (rule for key, rule in rules_of(SamplingSettings) if key == "max_new_tokens")
    assert all(rules[f"{role}.max_new_tokens"] is new_tokens for role in ("actor", "judge", "meta_judge", "evaluation"))
    assert rules["dpo.max_prompt_tokens"].describe() == rules["dpo.max_completion_tokens"].describe() == ">= 1"


def test_no_range_is_restated_as_a_comparison_in_the_package() -> None:
    restated = re.compile(
        r"\b(rho|beta|label_smoothing|max_new_tokens|max_prompt_tokens|max_completion_tokens)\s*[<>]=?\s*[0-9.]"
        r"|[0-9.]\s*[<>]=?\s*(self\.)?(rho|beta)\b"
    )
    quoted = re.compile(r"([\"']).*?\1")  # messages may name a range; code may not compare with one
    found = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
        for path in sorted((REPO_ROOT / "src").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if restated.search(quoted.sub("", line))
    ]
    assert found == []


def test_the_run_uses_the_settings_the_preflight_built(monkeypatch, tmp_path) -> None:
    """train.py runs the preflight (a Hydra callback) and then the run in one process: the settings are built once."""
    built = []
    read_settings = build.read_settings
    monkeypatch.setattr(build, "read_settings", lambda cfg: built.append(read_settings(cfg)) or built[-1])
    overrides = ["+experiment=smoke", f"paths.root_dir={REPO_ROOT}", f"hydra.run.dir={tmp_path / 'run'}"]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        full = hydra_compose(config_name="train", overrides=overrides, return_hydra_config=True)
    preflight.Preflight().on_run_start(full)
    job = preflight.task_config(full)  # the config Hydra then hands to train.py's main
    settings = training.run_settings(job)
    assert len(built) == 1 and settings is built[0][0] and built[0][1] == []
    assert not (tmp_path / "run").exists()
    assert training.run_settings(job) is not settings and len(built) == 2  # handed over once, to the one run

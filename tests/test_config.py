"""Every experiment composes and validates; bad values are all reported at once, naming their keys."""

from __future__ import annotations

import pytest
from helpers import compose, config_problems

from metareward.config.build import ConfigError, build_settings

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

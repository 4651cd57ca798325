"""Every experiment composes and validates; bad values are all reported at once, naming their keys."""

from __future__ import annotations

import pytest

from helpers import compose
from metareward.config import ConfigError, build_settings

EXPERIMENTS = ["meta_reward", "self_reward", "meta_reward_paper", "self_reward_paper", "smoke"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_validates(experiment: str) -> None:
    settings = build_settings(compose(f"+experiment={experiment}"))
    assert settings.experiment == experiment
    assert settings.num_iterations >= 1


def test_meta_reward_paper_holds_the_papers_settings() -> None:
    s = build_settings(compose("+experiment=meta_reward_paper"))
    assert (s.engine.num_responses, s.engine.num_judgments) == (7, 11)
    assert s.engine.judge_training_iterations == (1, 2)
    assert s.engine.prompts_per_iteration == 5000 and s.num_iterations == 4
    assert s.engine.rho_for(4) == pytest.approx(0.4)
    assert s.engine.judgment_cap_for(1) == 1100 and s.engine.judgment_cap_for(2) == 1000
    assert (s.beta, s.optim.lr) == (0.1, 5e-6)
    assert s.engine.score_mode == "parse" and s.engine.verdict_mode == "parse"


def test_self_reward_paper_holds_the_papers_settings() -> None:
    s = build_settings(compose("+experiment=self_reward_paper"))
    assert (s.engine.num_responses, s.engine.num_judgments) == (4, 3)
    assert s.engine.pair_strategy == "best_vs_worst" and s.engine.judge_training_iterations == ()
    assert (s.optim.lr, s.optim.min_lr, s.optim.lr_schedule) == (1e-6, 1e-7, "linear")


def test_user_facing_keys_reach_the_settings() -> None:
    s = build_settings(
        compose(
            "num_iterations=3", "seed=7", "data.prompts_per_iteration=5", "actor.num_responses=6",
            "judge.num_judgments=4", "pairs.rho=0.25",
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

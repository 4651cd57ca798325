"""Everything a run can be refused for, checked before it writes anything: the config's values, the run directory,
every data file it names and the model paths. `train.py` runs it (as a Hydra callback, before Hydra creates the
run directory), so a refused run leaves no file behind and prints one line per problem, exiting with code 2.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

if TYPE_CHECKING:  # the config layer imports torch: this module is imported when Hydra starts
    from metareward.config.build import RunSettings

USAGE_ERROR = 2  # the exit code of a refused run, as for a bad command line


def problems_of(error: Exception) -> list[str]:
    """The sentences of a ConfigError (`invalid config: a` or a `  - a` list below it), or the message itself."""
    text = str(error).strip()
    text = text.removeprefix("invalid config:")
    return [line.strip().removeprefix("- ") for line in text.splitlines() if line.strip()]


def preflight_problems(cfg: DictConfig) -> list[str]:
    """Every reason to refuse the run, as sentences naming the config key or file and the fix."""
    return checked_run(cfg)[1]


def checked_run(cfg: DictConfig) -> tuple[RunSettings | None, list[str]]:
    """The run's settings (None when the config is refused) and every reason to refuse the run: the config's values,
    the run directory, and the files it names, each loaded once here (the prompt pool with the settings' own
    reader, the warm-start files once the settings hold)."""
    from metareward.config.build import read_settings
    from metareward.run.resume import run_dir_problem

    settings, found = read_settings(cfg)
    run_dir = run_dir_problem(cfg, Path(str(cfg.paths.output_dir)), bool(cfg.get("resume", False)))
    found += [run_dir] if run_dir else []
    if settings is not None:
        found += _guarded(lambda: _pool_problems(settings)) + _guarded(lambda: _warm_start_problems(settings))
    found += _guarded(lambda: _evaluation_file_problems(cfg))
    found = list(dict.fromkeys(found))
    return (None if found else settings), found


def _guarded(check: Callable[[], list[str]]) -> list[str]:
    """A check's problems; a user-data error it raises becomes its one sentence."""
    from metareward.run.training import USER_ERRORS

    try:
        return check()
    except USER_ERRORS as error:
        return problems_of(error)
    # A value of the wrong type reaching a loader (int(inf) raises OverflowError): named by the type checks too.
    except (TypeError, ValueError, OverflowError) as error:
        return [f"invalid config value: {error}"]


def _pool_problems(settings: RunSettings) -> list[str]:
    from metareward.engine.prompt_pool import pool_size_problem

    problem = pool_size_problem(settings.data.load(), settings.engine.prompts_per_iteration)
    return [problem] if problem else []


def _warm_start_problems(settings: RunSettings) -> list[str]:
    from metareward.sft.warm_start import load_warm_start_data

    if settings.warm_start.enabled:
        load_warm_start_data(settings.warm_start, settings.engine.judge_prompt)
    return []


def _evaluation_file_problems(cfg: DictConfig) -> list[str]:
    from metareward.evaluation.data import load_eval_prompts, load_labelled_pairs
    from metareward.evaluation.settings import evaluator_checkpoint
    from metareward.model.loading import checkpoint_problems

    callbacks = cfg.get("callbacks") or {}
    found: list[str] = []
    win_rate, judge_quality = callbacks.get("win_rate"), callbacks.get("judge_quality")
    if win_rate is not None:
        found += _guarded(
            lambda: _loaded(
                load_eval_prompts,
                win_rate.data_path,
                win_rate.num_prompts,
                win_rate.instruction_field,
                win_rate.reference_field,
            )
        )
        path = evaluator_checkpoint(win_rate.get("evaluator"))
        if path is not None:
            found += checkpoint_problems(path, "evaluation.evaluator.path")
    if judge_quality is not None:
        found += _guarded(lambda: _loaded(load_labelled_pairs, judge_quality.data_path, judge_quality.num_pairs))
    return found


def _loaded(loader: Callable[..., Any], *args: Any) -> list[str]:
    loader(*args)
    return []


def refusal(problems: list[str]) -> str:
    """What a refused run prints: one problem on one line, several as a list below the first line."""
    if len(problems) == 1:
        return f"error: {problems[0]}"
    return "error: invalid config:\n  - " + "\n  - ".join(problems)


@contextmanager
def _quiet() -> Any:
    """The checks load the data files once more; their warnings (skipped lines) are logged by the run itself."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def task_config(config: DictConfig) -> DictConfig:
    """The job's config as the run will see it, `paths.output_dir` included, before Hydra has created anything:
    Hydra's runtime output directory is filled in the way its `run_job` does it."""
    from hydra.core.hydra_config import HydraConfig

    full = copy.deepcopy(config)
    with read_write(full.hydra.runtime), open_dict(full.hydra.runtime):
        full.hydra.runtime.output_dir = os.path.abspath(str(full.hydra.run.dir))
    HydraConfig.instance().set_config(full)
    task = copy.deepcopy(full)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


class Preflight(Callback):
    """Hydra callback: refuses a bad run before Hydra creates its run directory (RUN mode), else hands the settings
    it built to the run."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from metareward.run.training import hand_over

        with _quiet():
            try:
                task = task_config(config)
                settings, problems = checked_run(task)
            except Exception as error:  # noqa: BLE001 - never a traceback here: the run reports what this could not check
                logging.getLogger(__name__).debug("preflight skipped: %s", error)
                return
        if problems:
            print(refusal(problems), file=sys.stderr)
            sys.exit(USAGE_ERROR)
        hand_over(task, settings)  # the run uses these settings instead of building them again

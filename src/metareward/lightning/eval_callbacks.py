"""Evaluation after every iteration: win rates against a baseline, judge quality on labelled pairs, dashboards.

Each evaluation callback (stage EVALUATE) publishes its figures for iteration t on the run context's board under
its own `name` and logs them as `eval/<figure>` to every logger; the dashboard (stage REPORT) and IterationSummary
(SUMMARIZE, which writes them to summary.json) read the board after every evaluation has run (see handoff.py).
Files go to run_dir/eval/ (baseline cache, per-iteration annotations) and run_dir/plots/ (PNG files).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from metareward.compare.run_report import percent
from metareward.evaluation.data import (
    BaselineAnswer,
    cached_baseline,
    load_eval_prompts,
    load_labelled_pairs,
    save_baseline,
)
from metareward.evaluation.evaluators import PreferenceEvaluator, shared_evaluator
from metareward.evaluation.metrics import score_distribution
from metareward.evaluation.runner import (
    ArenaSettings,
    answer_figures,
    answer_prompts,
    judge_quality_report,
    read_judge_scores,
    win_rate_report,
    with_interval,
)
from metareward.evaluation.settings import build_evaluator
from metareward.generation.sampler import SamplingSettings
from metareward.lightning.handoff import RunCallback, RunContext, Stage, iteration_of
from metareward.lightning.strategies import full_weights
from metareward.model.roles import SEED_JUDGE_ROLE, SEED_ROLE
from metareward.storage.artifacts import read_json_lines, write_json

log = logging.getLogger(__name__)


def finite_figure(value: Any) -> float | None:
    """A figure as a number, None where the evaluation could not measure it (a win rate without prompts, say)."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def publish_figures(trainer: L.Trainer, context: RunContext, source: str, figures: Mapping[str, Any]) -> None:
    """Publish `source`'s figures for this iteration on the board and log the numeric ones as eval/<figure>."""
    iteration = iteration_of(trainer)
    context.board.publish(iteration, source, figures)
    numeric = {f"eval/{k}": value for k, v in figures.items() if (value := finite_figure(v)) is not None}
    for logger in trainer.loggers:
        logger.log_metrics({**numeric, "iteration": iteration}, step=trainer.global_step)


def eval_dir(run_dir: Path, iteration: int | None = None) -> Path:
    root = run_dir / "eval"
    return root if iteration is None else root / f"iter_{iteration:02d}"


class WinRateCallback(RunCallback):
    """Answers held-out prompts with the current actor and compares each answer with a baseline answer.

    The baseline is the reference answer in the data (`reference_field`) or else the seed model M0's answer
    (adapters off), made once per run and cached in run_dir/eval/baseline_answers.jsonl.

    Besides the win rates it reports the answers' mean length and the share that finish, and, with `seed_judge`,
    the loop's own objective on held-out prompts: the frozen seed judge M0's expected score of every answer
    (`seed_judge_score`), next to that of the baseline answers; each a mean over prompts with its bootstrap interval
    (the `arena` settings). Every value comes from conf/evaluation/default.yaml through conf/callbacks/default.yaml.
    """

    stage = Stage.EVALUATE

    def __init__(
        self,
        context: RunContext,
        data_path: str,
        num_prompts: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        batch_size: int,
        max_prompt_tokens: int,
        instruction_field: str,
        reference_field: str | None,
        evaluator: Mapping[str, Any],
        arena: Mapping[str, Any],
        seed: int,
        instruction_suffix: str,
        seed_judge: bool,
        name: str = "win_rate",
    ) -> None:
        super().__init__(context)
        self.name = name
        prompts = load_eval_prompts(data_path, num_prompts, instruction_field, reference_field)
        # The held-out prompts are asked the way the loop's prompts are (data.instruction_suffix).
        self.prompts = [replace(p, instruction=p.instruction + instruction_suffix) for p in prompts]
        self.sampling = SamplingSettings(temperature, top_p, max_new_tokens)
        self.batch_size, self.max_prompt_tokens, self.seed = batch_size, max_prompt_tokens, seed
        self.spec = build_evaluator(evaluator)  # conf/evaluation/evaluator/: raises ValueError listing every problem
        self.arena = ArenaSettings(**dict(arena), seed=seed)
        self.seed_judge = seed_judge
        self.evaluator: PreferenceEvaluator | None = None
        self._baseline_seed_figures: dict[str, float | None] | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        with full_weights(trainer):  # the model is called outside the strategy's forward: see strategies.py
            self._evaluate(trainer)

    def _evaluate(self, trainer: L.Trainer) -> None:
        started = time.perf_counter()
        iteration = iteration_of(trainer)
        figures, rows, baseline = self.measure(f"iteration {iteration}")
        folder = eval_dir(self.context.run_dir, iteration)
        write_json(folder / "win_rate.json", {"figures": figures, "annotations": rows})
        figures["seconds_win_rate"] = time.perf_counter() - started
        publish_figures(trainer, self.context, self.name, figures)
        log.info(
            "iteration %d: win rate %s, LC win rate %s against %s",
            iteration,
            percent(figures["win_rate"]),
            percent(figures["lc_win_rate"]),
            baseline[0].source if baseline else "nothing",
        )

    def measure(self, label: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[BaselineAnswer]]:
        """The figures and annotated rows of the actor as it is now against the baseline (`label` names the pass in
        progress bars), and the baseline: what every evaluation of the run computes, written by none."""
        baseline = self._baseline()
        backend = self.context.evaluation_backend()  # the run's, each call shared out over the training processes
        answers = answer_prompts(
            backend,
            "actor",
            self.prompts,
            self.sampling,
            self.batch_size,
            self.max_prompt_tokens,
            self.seed,
            desc=f"{label}: evaluation answers",
        )
        texts, baseline_texts = [a.text for a in answers], [b.text for b in baseline]
        if self.evaluator is None:  # attached to the run's own backend: its comparisons are shared out as a whole
            self.evaluator = shared_evaluator(self.spec.attach(self.context.backend()), self.context.shard)
        figures, rows = win_rate_report(self.prompts, texts, baseline_texts, self.evaluator, self.arena)
        figures.update(answer_figures(texts, [a.finished for a in answers], self.arena))
        figures.update(answer_figures(baseline_texts, [b.finished for b in baseline], self.arena, "baseline_"))
        if self.seed_judge:
            scores = self._seed_judge_scores(texts, f"{label}: seed judge")
            figures.update(with_interval("seed_judge_score", scores, self.arena))
            figures.update(self._baseline_seed_judge(baseline_texts))
            for row, score in zip(rows, scores):
                row["seed_judge_score"] = float(score)
        return figures, rows, baseline

    @property
    def reads_judge_scores(self) -> bool:
        """The seed judge reads scores from probabilities: run.py checks the judge prompt's choices for them."""
        return self.seed_judge

    def _seed_judge_scores(self, answers: list[str], desc: str) -> list[float]:
        items = [(p.instruction, a) for p, a in zip(self.prompts, answers)]
        backend = self.context.evaluation_backend()
        prompt = self.context.judge_prompt
        scores = read_judge_scores(
            backend, items, prompt, self.batch_size, self.max_prompt_tokens, SEED_JUDGE_ROLE, desc
        )
        return scores.tolist()

    def _baseline_seed_judge(self, baseline: list[str]) -> dict[str, float | None]:
        """The seed judge's score of the baseline answers: the same every iteration, read once per run."""
        if self._baseline_seed_figures is None:
            scores = self._seed_judge_scores(baseline, "seed judge: baseline answers")
            self._baseline_seed_figures = with_interval("baseline_seed_judge_score", scores, self.arena)
        return dict(self._baseline_seed_figures)

    def _baseline(self) -> list[BaselineAnswer]:
        if all(p.reference is not None for p in self.prompts):
            return [BaselineAnswer(p.id, str(p.reference), "reference") for p in self.prompts]
        path = eval_dir(self.context.run_dir) / "baseline_answers.jsonl"
        cached = cached_baseline(path, self.prompts)
        if cached is not None:
            return cached
        generations = answer_prompts(
            self.context.evaluation_backend(),
            SEED_ROLE,
            self.prompts,
            self.sampling,
            self.batch_size,
            self.max_prompt_tokens,
            self.seed,
            desc="seed model answers",
        )
        answers = [BaselineAnswer(p.id, g.text, "seed", g.finished) for p, g in zip(self.prompts, generations)]
        save_baseline(path, answers)
        return answers


class JudgeQualityCallback(RunCallback):
    """Scores both answers of labelled pairs with the current judge (score read by probability after "Score: ")
    and reports agreement with the labels; also the distribution of the iteration's judge scores."""

    stage = Stage.EVALUATE
    reads_judge_scores = True  # from probabilities, whatever judge.score_mode is: run.py checks the prompt's choices

    def __init__(
        self,
        context: RunContext,
        data_path: str,
        num_pairs: int,
        batch_size: int,
        max_prompt_tokens: int,
        tie_tolerance: float,
        name: str = "judge_quality",
    ) -> None:
        super().__init__(context)
        self.name = name
        self.pairs = load_labelled_pairs(data_path, num_pairs)
        self.batch_size, self.max_prompt_tokens, self.tie_tolerance = batch_size, max_prompt_tokens, tie_tolerance

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        with full_weights(trainer):
            self._evaluate(trainer)

    def _evaluate(self, trainer: L.Trainer) -> None:
        started = time.perf_counter()
        iteration = iteration_of(trainer)
        items = [(p.instruction, p.good) for p in self.pairs] + [(p.instruction, p.poor) for p in self.pairs]
        backend = self.context.evaluation_backend()
        scores = read_judge_scores(backend, items, self.context.judge_prompt, self.batch_size, self.max_prompt_tokens)
        n = len(self.pairs)
        figures, rows = judge_quality_report(self.pairs, scores[:n], scores[n:], self.tie_tolerance)
        folder = eval_dir(self.context.run_dir, iteration)
        write_json(folder / "judge_quality.json", {"figures": figures, "pairs": rows})
        figures.update(self._score_distribution(iteration))
        figures["seconds_judge_quality"] = time.perf_counter() - started
        publish_figures(trainer, self.context, self.name, figures)

    def _score_distribution(self, iteration: int) -> dict[str, float]:
        from metareward.evaluation.plots import judge_scores

        scores = judge_scores(self.context.run_dir).get(iteration, [])
        bins = self.context.judge_prompt.score_values
        return {f"judge_score_{k}": v for k, v in score_distribution(scores, bins).items()}


def _jsonl(path: Path, limit: int) -> list[dict[str, Any]]:
    return read_json_lines(path, limit) if path.is_file() else []


def sample_tables(run_dir: Path, iteration: int, limit: int) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """Name -> (columns, rows) of the iteration's first `limit` responses, judgments and meta-judgments, with the
    prompt text joined in, and of the evaluation answers against the baseline."""
    from metareward.storage.run_layout import iteration_dir

    folder = iteration_dir(run_dir, iteration)
    prompts = {p["id"]: p["instruction"] for p in _jsonl(folder / "prompts.jsonl", 10**6)}
    layouts = {
        "responses": ("responses.jsonl", ["prompt_id", "index", "text", "num_tokens", "finished"]),
        "judgments": ("judgments.jsonl", ["prompt_id", "response_index", "index", "text", "score", "score_source"]),
        "meta_judgments": (
            "meta_judgments.jsonl",
            ["prompt_id", "response_index", "first", "second", "text", "verdict"],
        ),
    }
    tables = {}
    for name, (file, columns) in layouts.items():
        rows = _jsonl(folder / file, limit)
        if rows:
            tables[name] = (
                ["instruction", *columns],
                [[prompts.get(r.get("prompt_id"), "")] + [r.get(c) for c in columns] for r in rows],
            )
    win_rate = run_dir / "eval" / f"iter_{iteration:02d}" / "win_rate.json"
    if win_rate.is_file():
        import json

        columns = ["prompt_id", "instruction", "answer", "baseline", "preference"]
        rows = json.loads(win_rate.read_text(encoding="utf-8"))["annotations"][:limit]
        tables["eval_answers"] = (columns, [[r[c] for c in columns] for r in rows])
    return tables


# The per-iteration metric families: eval/ (publish_figures), and the data statistics IterationSummary logs.
PER_ITERATION_PREFIXES = ("eval", "pairs", "actor", "judge", "meta", "data", "time")


class DashboardCallback(RunCallback):
    """Per iteration: PNG plots in `plots_dir` (win rates, lengths, judge quality, judge score histogram) and, for
    wandb loggers, the same plots as images plus Tables of sample responses, judgments, meta-judgments and
    evaluation answers. Stage REPORT: it reads the board after every evaluation callback has published."""

    stage = Stage.REPORT

    def __init__(self, context: RunContext, plots_dir: str, num_table_rows: int, run_name: str) -> None:
        super().__init__(context)
        self.plots_dir = Path(plots_dir)
        self.num_table_rows = num_table_rows
        self.run_name = run_name
        self.records: list[dict[str, Any]] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """wandb charts the per-iteration figures (evaluation, data statistics) against the iteration, not the step."""
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.define_metric("iteration")
                for prefix in PER_ITERATION_PREFIXES:
                    logger.experiment.define_metric(f"{prefix}/*", step_metric="iteration")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from metareward.evaluation.plots import judge_scores, report_figures, save_figures

        iteration = iteration_of(trainer)
        data = self.context.data_for(iteration)
        stats = dict(data.stats) if data is not None else {}
        self.records.append({"iteration": iteration, "eval": self.context.board.figures(iteration), "stats": stats})
        run_dir = self.context.run_dir
        figures = report_figures({self.run_name: self.records}, judge_scores(run_dir), self.context.judge_prompt)
        paths = save_figures(figures, self.plots_dir)
        wandb_loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if wandb_loggers:
            self._log_wandb(wandb_loggers, paths, sample_tables(run_dir, iteration, self.num_table_rows), iteration)

    @staticmethod
    def _log_wandb(loggers: list, paths: list[Path], tables: Mapping[str, tuple], iteration: int) -> None:
        import wandb

        payload: dict[str, Any] = {f"plots/{p.stem}": wandb.Image(str(p)) for p in paths}
        payload.update({f"samples/{name}": wandb.Table(columns=c, data=r) for name, (c, r) in tables.items()})
        payload["iteration"] = iteration
        for logger in loggers:
            logger.experiment.log(payload)

"""One export: check everything the user gave (all problems at once, before any model loads), then answer every
prompt that fits with iteration T's policy and write the benchmark files and `export_stats.json`.

Answers go through the generation seam (`engine.policy.Policy`, role `actor`, or `seed` for M0), greedy unless a
temperature is given, with the model's chat template (`model.chat.render_prompt`). Prompts are asked exactly as the
file gives them (the run's `data.instruction_suffix` is a training-loop device, not part of a benchmark) and never
cut: a prompt longer than `max_prompt_tokens` is skipped, logged and counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metareward.config.build import problems_error
from metareward.core.seeding import derive_seed
from metareward.export.checkpoint import RunDirError, SavedRun, iteration_problem, load_policy, open_run
from metareward.export.outputs import (
    OUTPUT_FORMATS,
    STATS_FILE,
    BenchmarkAnswer,
    OutputFormat,
    selected_formats,
    write_outputs,
)
from metareward.export.prompts import BenchmarkPrompt, PromptFile, PromptFileError, load_benchmark_prompts
from metareward.generation.policy import GenerationBackend
from metareward.generation.sampler import GenerationRequest, RoleSettings, SamplingSettings
from metareward.model.chat import encode_prompt, render_prompt
from metareward.model.roles import SEED_ROLE
from metareward.storage.artifacts import write_json

log = logging.getLogger("metareward.export")
PROMPT_TOO_LONG = "prompt_too_long"


# Above this share of answers cut at max_new_tokens, the export writes nothing unless --allow-cut asks for them.
CUT_TOLERANCE = 0.02


class ExportError(ValueError):
    """What the user gave cannot be exported; one problem per line, each naming the option and the fix."""


@dataclass(frozen=True)
class ExportOptions:
    """The command line as given; None takes the run's own value (its `evaluation` group)."""

    run_dir: str
    iteration: int
    prompts: str
    out: str
    format: str = "both"
    max_new_tokens: int | None = None
    batch_size: int | None = None
    max_prompt_tokens: int | None = None
    temperature: float = 0.0
    generator: str | None = None
    progress: bool = True
    allow_cut: bool = False


@dataclass(frozen=True)
class ExportJob:
    run: SavedRun
    iteration: int
    prompts: PromptFile
    out_dir: Path
    formats: tuple[OutputFormat, ...]
    generator: str
    sampling: SamplingSettings
    batch_size: int
    max_prompt_tokens: int
    progress: bool = True
    allow_cut: bool = False

    @property
    def role(self) -> str:
        return SEED_ROLE if self.iteration == 0 else "actor"


def prepare_job(options: ExportOptions) -> ExportJob:
    """Every check that needs no model; raises ExportError listing each problem."""
    problems: list[str] = []
    run = _checked(lambda: open_run(options.run_dir), RunDirError, problems)
    prompts = _checked(lambda: load_benchmark_prompts(options.prompts), PromptFileError, problems)
    if run is not None:
        problems += [p for p in [iteration_problem(run, options.iteration)] if p] + run.model().problems()
    if options.format not in (*OUTPUT_FORMATS, "both"):
        problems.append(f"--format={options.format!r} is not one of {[*OUTPUT_FORMATS, 'both']}")
    out_dir = Path(options.out).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        problems.append(f"--out={str(out_dir)!r} is a file; give a folder for the answer files")
    numbers = _numbers(options, run)
    problems += [f"--{name.replace('_', '-')}={n} must be at least 1" for name, n in numbers.items() if n < 1]
    if not options.temperature >= 0:
        problems.append(f"--temperature={options.temperature} must be >= 0 (0: greedy, the default)")
    generator = options.generator
    if generator is None:
        generator = f"{run.experiment if run else 'run'}-iter{options.iteration}"
    if not generator.strip():
        problems.append("--generator is empty; give the model's name as the benchmark leaderboards should show it")
    if problems:
        raise problems_error(ExportError, "cannot export", problems)
    return ExportJob(
        run=run,
        iteration=options.iteration,
        prompts=prompts,
        out_dir=out_dir,
        formats=selected_formats(options.format),
        generator=generator,
        sampling=SamplingSettings(options.temperature, 1.0, numbers["max_new_tokens"]),
        batch_size=numbers["batch_size"],
        max_prompt_tokens=numbers["max_prompt_tokens"],
        progress=options.progress,
        allow_cut=options.allow_cut,
    )


def _checked(make: Any, error: type[Exception], problems: list[str]) -> Any:
    """`make()`, or None with its error's sentence added to `problems`."""
    try:
        return make()
    except error as failure:
        problems.append(str(failure))
        return None


def _numbers(options: ExportOptions, run: SavedRun | None) -> dict[str, int]:
    """max_new_tokens, batch_size, max_prompt_tokens: the options given, else the run's evaluation settings."""
    defaults = {"max_new_tokens": 96, "batch_size": 16, "max_prompt_tokens": 1024}
    numbers = {}
    for name, default in defaults.items():
        given = getattr(options, name)
        numbers[name] = int(given if given is not None else (run.evaluation(name, default) if run else default))
    return numbers


@dataclass(frozen=True)
class ExportResult:
    paths: tuple[Path, ...]
    answers: tuple[BenchmarkAnswer, ...]
    skipped: tuple[BenchmarkPrompt, ...]
    stats: dict[str, Any]


def run_export(job: ExportJob) -> ExportResult:
    """Load iteration T's policy, answer every prompt that fits, write the answer files and the stats beside them."""
    started = time.perf_counter()
    policy, _ = load_policy(job.run, job.iteration, job.max_prompt_tokens, job.progress)
    rendered = {p.key: render_prompt(policy.tokenizer, p.instruction) for p in job.prompts.prompts}
    lengths = {key: len(encode_prompt(policy.tokenizer, text)) for key, text in rendered.items()}
    fitting = [p for p in job.prompts.prompts if lengths[p.key] <= job.max_prompt_tokens]
    skipped = [p for p in job.prompts.prompts if lengths[p.key] > job.max_prompt_tokens]
    _log_skipped(skipped, lengths, job.max_prompt_tokens)
    answers = answer(policy, job, fitting, rendered)
    cut = sum(not a.finished for a in answers)
    if cut > CUT_TOLERANCE * len(answers) and not job.allow_cut:
        raise ExportError(
            f"{cut} of {len(answers)} answers hit --max-new-tokens={job.sampling.max_new_tokens} before they ended, "
            "and a benchmark would judge them cut; raise --max-new-tokens (the papers' answers average about 2,000 "
            "characters), or pass --allow-cut to write them anyway. Nothing was written"
        )
    paths = write_outputs(job.out_dir, job.formats, answers, job.generator, time.time())
    stats = export_stats(job, answers, skipped, time.perf_counter() - started)
    write_json(job.out_dir / STATS_FILE, stats)
    return ExportResult(tuple(paths), tuple(answers), tuple(skipped), stats)


def answer(
    policy: GenerationBackend, job: ExportJob, prompts: Sequence[BenchmarkPrompt], rendered: dict[str, str]
) -> list[BenchmarkAnswer]:
    """One answer per prompt by the job's role, each request seeded from the prompt's id (reruns answer alike)."""
    requests = [GenerationRequest(p.key, rendered[p.key], derive_seed(0, "export", p.key)) for p in prompts]
    desc = f"iteration {job.iteration} answers ({job.prompts.kind})"
    if not requests:
        return []
    settings = RoleSettings(job.sampling, job.batch_size)
    generations = policy.generate(job.role, requests, settings, desc, max_prompt_tokens=job.max_prompt_tokens)
    return [BenchmarkAnswer(p, g.text, g.num_tokens, g.finished) for p, g in zip(prompts, generations)]


def _log_skipped(skipped: Sequence[BenchmarkPrompt], lengths: dict[str, int], limit: int) -> None:
    for prompt in skipped:
        log.warning("skipped prompt %s: %d tokens, over the limit of %d", prompt.key, lengths[prompt.key], limit)


def export_stats(
    job: ExportJob, answers: Sequence[BenchmarkAnswer], skipped: Sequence[BenchmarkPrompt], seconds: float
) -> dict[str, Any]:
    """What was exported and what was left out (`export_stats.json`)."""
    return {
        "run_dir": str(job.run.run_dir),
        "iteration": job.iteration,
        "role": job.role,
        "generator": job.generator,
        "prompts_file": str(job.prompts.path),
        "prompts_format": job.prompts.kind,
        "prompts": len(job.prompts.prompts),
        "answered": len(answers),
        "unfinished": sum(not a.finished for a in answers),  # answers that hit max_new_tokens
        "dropped": {PROMPT_TOO_LONG: len(skipped)},
        "dropped_ids": {PROMPT_TOO_LONG: [p.question_id for p in skipped]},
        "temperature": job.sampling.temperature,
        "max_new_tokens": job.sampling.max_new_tokens,
        "max_prompt_tokens": job.max_prompt_tokens,
        "outputs": [f.file_name for f in job.formats],
        "seconds": seconds,
    }

"""One export: check everything the user gave (all problems at once, before any model loads), then answer every
prompt that fits with iteration T's policy and write the benchmark files and `export_stats.json`.

Answers go through the generation seam (`engine.policy.Policy`, role `actor`, or `seed` for M0), greedy unless a
temperature is given, with the model's chat template (`model.chat.render_prompt`). Prompts are asked exactly as the
file gives them (the run's `data.instruction_suffix` is a training-loop device, not part of a benchmark) and never
cut: a prompt longer than `max_prompt_tokens` is skipped, logged and counted.

MT-Bench questions have follow-up turns. Every question's first turn is answered as any prompt is; then each later
turn is asked, in one batched generation per turn, as the conversation so far (`model.chat.render_messages`: the
user's turns and the model's own earlier answers, ending with the new user turn). A conversation that grows over
`max_prompt_tokens` is not cut either: the question's remaining turns are not asked, it is logged and counted
(`turn_too_long`), and the MT-Bench answer file leaves it out. The cut check (`CUT_TOLERANCE`) counts every turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from metareward.config.build import problems_error
from metareward.core.seeding import derive_seed
from metareward.export.checkpoint import RunDirError, SavedRun, iteration_problem, load_policy, open_run
from metareward.export.outputs import (
    ALL_FORMATS,
    OUTPUT_FORMATS,
    STATS_FILE,
    BenchmarkAnswer,
    FormatMismatch,
    OutputFormat,
    TurnAnswer,
    selected_formats,
    write_outputs,
)
from metareward.export.prompts import BenchmarkPrompt, PromptFile, PromptFileError, load_benchmark_prompts
from metareward.generation.policy import GenerationBackend
from metareward.generation.sampler import Generation, GenerationRequest, RoleSettings, SamplingSettings
from metareward.model.chat import encode_prompt, encode_text, render_messages, render_prompt
from metareward.model.roles import SEED_ROLE
from metareward.storage.artifacts import write_json

log = logging.getLogger("metareward.export")
PROMPT_TOO_LONG = "prompt_too_long"
# A later turn of a multi-turn question whose conversation so far is over max_prompt_tokens.
TURN_TOO_LONG = "turn_too_long"


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
    format: str = ALL_FORMATS
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
        """The actor's weights of the iteration; M0 without a warm start is the base model (every adapter off)."""
        return "actor" if self.iteration in self.run.saved_iterations() else SEED_ROLE


def prepare_job(options: ExportOptions) -> ExportJob:
    """Every check that needs no model; raises ExportError listing each problem."""
    problems: list[str] = []
    run = _checked(lambda: open_run(options.run_dir), RunDirError, problems)
    prompts = _checked(lambda: load_benchmark_prompts(options.prompts), PromptFileError, problems)
    if run is not None:
        problems += [p for p in [iteration_problem(run, options.iteration)] if p] + run.model().problems()
    formats = _formats(options.format, prompts, problems)
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
        formats=formats,
        generator=generator,
        sampling=SamplingSettings(options.temperature, 1.0, numbers["max_new_tokens"]),
        batch_size=numbers["batch_size"],
        max_prompt_tokens=numbers["max_prompt_tokens"],
        progress=options.progress,
        allow_cut=options.allow_cut,
    )


def _formats(name: str, prompts: PromptFile | None, problems: list[str]) -> tuple[OutputFormat, ...]:
    """The answer files of `--format` for the prompt file (see `outputs.selected_formats`); () with the problem added
    when the name is unknown or does not fit the file."""
    if name not in (*OUTPUT_FORMATS, ALL_FORMATS):
        problems.append(f"--format={name!r} is not one of {[*OUTPUT_FORMATS, ALL_FORMATS]}")
        return ()
    multi_turn = prompts is not None and prompts.multi_turn
    try:
        return selected_formats(name, multi_turn)
    except FormatMismatch as mismatch:
        if prompts is not None:
            problems.append(f"{mismatch} ({prompts.path} is {prompts.kind})")
        return ()


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
    """`skipped`: prompts whose first turn is over the limit; `turn_skipped`: questions a later turn of which is
    (answered up to there, but left out of the MT-Bench file)."""

    paths: tuple[Path, ...]
    answers: tuple[BenchmarkAnswer, ...]
    skipped: tuple[BenchmarkPrompt, ...]
    stats: dict[str, Any]
    turn_skipped: tuple[BenchmarkPrompt, ...] = ()


def run_export(job: ExportJob) -> ExportResult:
    """Load iteration T's policy, answer every prompt that fits, write the answer files and the stats beside them."""
    started = time.perf_counter()
    policy, _ = load_policy(job.run, job.iteration, job.max_prompt_tokens, job.progress)
    answers, skipped, turn_skipped = answer_all(policy, job)
    _refuse_cut(job, answers)
    paths = write_outputs(job.out_dir, job.formats, answers, job.generator, time.time())
    stats = export_stats(job, answers, skipped, time.perf_counter() - started, turn_skipped)
    write_json(job.out_dir / STATS_FILE, stats)
    return ExportResult(tuple(paths), tuple(answers), tuple(skipped), stats, tuple(turn_skipped))


def answer_all(
    policy: GenerationBackend, job: ExportJob
) -> tuple[list[BenchmarkAnswer], list[BenchmarkPrompt], list[BenchmarkPrompt]]:
    """(answers, prompts skipped at their first turn, questions skipped at a later turn): first turns of every
    prompt that fits, then the follow-up turns of those that have any."""
    rendered = {p.key: render_prompt(policy.tokenizer, p.instruction) for p in job.prompts.prompts}
    lengths = {key: len(encode_prompt(policy.tokenizer, text)) for key, text in rendered.items()}
    fitting = [p for p in job.prompts.prompts if lengths[p.key] <= job.max_prompt_tokens]
    skipped = [p for p in job.prompts.prompts if lengths[p.key] > job.max_prompt_tokens]
    _log_skipped(skipped, lengths, job.max_prompt_tokens)
    answers, turn_skipped = answer_follow_ups(policy, job, answer(policy, job, fitting, rendered))
    return answers, skipped, turn_skipped


def _refuse_cut(job: ExportJob, answers: Sequence[BenchmarkAnswer]) -> None:
    """Raise when more than CUT_TOLERANCE of all turn answers hit max_new_tokens (unless --allow-cut)."""
    turns = [turn for answer in answers for turn in answer.turns]
    cut = sum(not turn.finished for turn in turns)
    if cut > CUT_TOLERANCE * len(turns) and not job.allow_cut:
        noun = "answers" if len(turns) == len(answers) else "turn answers"
        raise ExportError(
            f"{cut} of {len(turns)} {noun} hit --max-new-tokens={job.sampling.max_new_tokens} before they ended, "
            "and a benchmark would judge them cut; raise --max-new-tokens (the papers' answers average about 2,000 "
            "characters), or pass --allow-cut to write them anyway. Nothing was written"
        )


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
    return [BenchmarkAnswer(p, (_turn_answer(g, policy.tokenizer),)) for p, g in zip(prompts, generations)]


def _turn_answer(generation: Generation, tokenizer: PreTrainedTokenizerBase) -> TurnAnswer:
    """One turn's answer, without a thinking model's reasoning, which benchmarks neither grade nor count."""
    tokens = len(encode_text(tokenizer, generation.text)) if generation.reasoning else generation.num_tokens
    return TurnAnswer(generation.text, tokens, generation.finished)


def answer_follow_ups(
    policy: GenerationBackend, job: ExportJob, answers: Sequence[BenchmarkAnswer]
) -> tuple[list[BenchmarkAnswer], list[BenchmarkPrompt]]:
    """Turn 2, 3, ... of every question that has them, one batched generation per turn number; a question whose
    conversation went over the limit at some turn is asked no further. Returns the answers, in the same order, and
    those questions."""
    answers = list(answers)
    turn_skipped: list[BenchmarkPrompt] = []
    last_turn = max((len(a.prompt.turns) for a in answers), default=1)
    for turn in range(2, last_turn + 1):
        asked = [a for a in answers if len(a.prompt.turns) >= turn and len(a.turns) == turn - 1]
        extended, too_long = _answer_turn(policy, job, asked, turn)
        answers = [extended.get(a.prompt.key, a) for a in answers]
        turn_skipped += too_long
    return answers, turn_skipped


def _answer_turn(
    policy: GenerationBackend, job: ExportJob, asked: Sequence[BenchmarkAnswer], turn: int
) -> tuple[dict[str, BenchmarkAnswer], list[BenchmarkPrompt]]:
    """Turn `turn` (2 or later) of each answer in `asked`: ({prompt key: the answer with that turn added}, the
    questions whose conversation is over max_prompt_tokens, left unasked rather than cut)."""
    rendered = {a.prompt.key: render_messages(policy.tokenizer, conversation_so_far(a)) for a in asked}
    lengths = {key: len(encode_prompt(policy.tokenizer, text)) for key, text in rendered.items()}
    fitting = [a for a in asked if lengths[a.prompt.key] <= job.max_prompt_tokens]
    too_long = [a.prompt for a in asked if lengths[a.prompt.key] > job.max_prompt_tokens]
    for prompt in too_long:
        log.warning(
            "left out question %s: its conversation at turn %d is %d tokens, over the limit of %d",
            prompt.key,
            turn,
            lengths[prompt.key],
            job.max_prompt_tokens,
        )
    if not fitting:
        return {}, too_long
    requests = [_turn_request(a.prompt.key, rendered[a.prompt.key], turn) for a in fitting]
    desc = f"iteration {job.iteration} answers ({job.prompts.kind}, turn {turn})"
    settings = RoleSettings(job.sampling, job.batch_size)
    generations = policy.generate(job.role, requests, settings, desc, max_prompt_tokens=job.max_prompt_tokens)
    extended = {
        a.prompt.key: replace(a, turns=(*a.turns, _turn_answer(g, policy.tokenizer)))
        for a, g in zip(fitting, generations)
    }
    return extended, too_long


def _turn_request(key: str, prompt: str, turn: int) -> GenerationRequest:
    """A later turn's request, keyed and seeded by the question and the turn, so reruns answer alike and no two
    turns share a seed."""
    return GenerationRequest(f"{key}/turn{turn}", prompt, derive_seed(0, "export", key, turn))


def conversation_so_far(answer: BenchmarkAnswer) -> list[dict[str, str]]:
    """The chat messages that ask the next turn: each user turn answered so far followed by the model's own
    answer to it, then the next user turn."""
    messages = []
    for question, reply in zip(answer.prompt.turns, answer.turns):
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": reply.text}]
    return [*messages, {"role": "user", "content": answer.prompt.turns[len(answer.turns)]}]


def _log_skipped(skipped: Sequence[BenchmarkPrompt], lengths: dict[str, int], limit: int) -> None:
    for prompt in skipped:
        log.warning("skipped prompt %s: %d tokens, over the limit of %d", prompt.key, lengths[prompt.key], limit)


def export_stats(
    job: ExportJob,
    answers: Sequence[BenchmarkAnswer],
    skipped: Sequence[BenchmarkPrompt],
    seconds: float,
    turn_skipped: Sequence[BenchmarkPrompt] = (),
) -> dict[str, Any]:
    """What was exported and what was left out (`export_stats.json`). `answered` counts prompts with every turn
    answered; a multi-turn file adds `turns_answered` and the `turn_too_long` questions."""
    stats = {
        "run_dir": str(job.run.run_dir),
        "iteration": job.iteration,
        "role": job.role,
        "generator": job.generator,
        "prompts_file": str(job.prompts.path),
        "prompts_format": job.prompts.kind,
        "prompts": len(job.prompts.prompts),
        "answered": sum(a.complete for a in answers),
        "unfinished": sum(not t.finished for a in answers for t in a.turns),  # turn answers that hit max_new_tokens
        "dropped": {PROMPT_TOO_LONG: len(skipped)},
        "dropped_ids": {PROMPT_TOO_LONG: [p.question_id for p in skipped]},
        "temperature": job.sampling.temperature,
        "max_new_tokens": job.sampling.max_new_tokens,
        "max_prompt_tokens": job.max_prompt_tokens,
        "outputs": [f.file_name for f in job.formats],
        "seconds": seconds,
    }
    if job.prompts.multi_turn:
        stats["turns_answered"] = sum(len(a.turns) for a in answers)
        stats["dropped"][TURN_TOO_LONG] = len(turn_skipped)
        stats["dropped_ids"][TURN_TOO_LONG] = [p.question_id for p in turn_skipped]
    return stats

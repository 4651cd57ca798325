"""`python -m metareward.selfinstruct --output pool.jsonl --count 100`: grow a prompt pool with self-instruct.

Reads the pool (default: the shipped seed prompts), loads the generator model (default: the embedded
SmolLM2-135M-Instruct; any `builtin:` name, local checkpoint directory or hub id), writes the pool plus the new
prompts to `--output` and the counts to `<output stem>.stats.json`, and prints what each filter removed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from metareward.engine.prompt_pool import PromptPoolError, load_prompt_pool
from metareward.generation.policy import FixedModel, Policy
from metareward.generation.sampler import SamplingSettings
from metareward.model.embedded import EmbeddedModelError
from metareward.model.loading import ModelLoadError, ModelSpec
from metareward.schema.rules import field_problems
from metareward.selfinstruct.filters import DEFAULT_BANNED_KEYWORDS, FilterSettings
from metareward.selfinstruct.stage import SelfInstructSettings, self_instruct, write_augmented_pool

DEFAULT_POOL = Path(os.environ.get("PROJECT_ROOT", ".")) / "data" / "prompts" / "seed.jsonl"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m metareward.selfinstruct", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--input", default=str(DEFAULT_POOL), help="prompt pool (JSONL with an `instruction` field)")
    add("--output", required=True, help="where to write the augmented pool (JSONL)")
    add("--count", type=int, default=100, help="how many new prompts to add")
    add("--model", default="builtin:smollm2-135m-instruct", help="generator: builtin:<name>, a directory or a hub id")
    add(
        "--dtype",
        default="float32",
        help="float32, bfloat16, float16, or auto (bfloat16 where the hardware computes it natively)",
    )
    add("--temperature", type=float, default=0.6)
    add("--top-p", type=float, default=0.9)
    add("--max-new-tokens", type=int, default=64)
    add("--num-examples", type=int, default=6, help="few-shot examples per request")
    add("--requests-per-round", type=int, default=32)
    add("--max-rounds", type=int, default=20)
    add("--batch-size", type=int, default=16)
    add("--max-rouge-l", type=float, default=0.7, help="drop a prompt this similar (ROUGE-L F) to any other")
    add("--min-words", type=int, default=3)
    add("--max-words", type=int, default=60)
    add("--banned-keywords", default=",".join(DEFAULT_BANNED_KEYWORDS), help="comma-separated; empty for none")
    add("--seed", type=int, default=0)
    add("--no-progress", action="store_true")
    return parser


def settings_from_args(args: argparse.Namespace) -> SelfInstructSettings:
    keywords = tuple(word.strip().lower() for word in args.banned_keywords.split(",") if word.strip())
    return SelfInstructSettings(
        num_prompts=args.count,
        sampling=SamplingSettings(args.temperature, args.top_p, args.max_new_tokens),
        filters=FilterSettings(args.max_rouge_l, args.min_words, args.max_words, keywords),
        num_examples=args.num_examples,
        requests_per_round=args.requests_per_round,
        max_rounds=args.max_rounds,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    try:
        settings = settings_from_args(args)
        spec = ModelSpec(path=args.model, dtype=args.dtype)
        problems = settings.problems() + field_problems(spec, "model") + spec.problems()
        if problems:
            raise ValueError("; ".join(problems))
        pool = load_prompt_pool(args.input)
        from metareward.model.loading import load_model_and_tokenizer

        model, tokenizer = load_model_and_tokenizer(spec)
    except (ValueError, PromptPoolError, ModelLoadError, EmbeddedModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    backend = Policy(FixedModel(model), tokenizer, settings.max_prompt_tokens, settings.progress)
    result = self_instruct(backend, pool.prompts, settings)
    written = write_augmented_pool(Path(args.output), pool.prompts, result)
    print(format_report(result.summary(), written, args.output))
    return 0


def format_report(summary: dict, written: int, output: str) -> str:
    head = (
        f"generated {summary['generated']} candidates in {summary['rounds']} rounds; "
        f"added {summary['new_prompts']} new prompts; wrote {written} prompts to {output}"
    )
    lines = [head, "removed by filter:"]
    lines += [f"  {reason:<12} {count}" for reason, count in summary["drops"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

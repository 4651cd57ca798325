"""`python -m metareward.bench {dpo,generate,e2e,precision,lora-rate,scale,all} [--json] [--quick]`; see metareward.bench for
the design.

Also `python -m metareward.bench gpu [--quick]` (metareward.bench.gpu_check: check and measure a CUDA machine without
internet) and `python -m metareward.bench wheelhouse` (metareward.bench.wheelhouse: the wheels that check installs).
These two are dispatched before anything else is imported: the GPU check must report even where torch is broken, and
the wheelhouse is made with a bare Python. So the benchmarks' own imports are inside the functions below.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

SUBCOMMANDS = {"gpu": "metareward.bench.gpu_check", "wheelhouse": "metareward.bench.wheelhouse"}
NAMES = ("dpo", "generate", "e2e")  # `all` runs these; `scale` needs a GPU, `precision` and `lora-rate` compare alone
DEFAULT_MODEL = "builtin:smollm2-135m-instruct"
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as shells report Ctrl-C


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m metareward.bench", description=__doc__)
    p.add_argument("name", choices=(*NAMES, "precision", "lora-rate", "scale", "all", *SUBCOMMANDS))
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object, the last line")
    p.add_argument("--quick", action="store_true", help="smoke-size inputs (seconds, not minutes)")
    p.add_argument("--model", default=None, help=f"model path (default {DEFAULT_MODEL}; builtin:tiny for tests)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--pairs", type=int, default=8, help="dpo: timed pairs")
    p.add_argument("--batch-size", type=int, default=4, help="dpo: pairs per optimizer step (both sides)")
    p.add_argument("--rounds", type=int, default=2, help="dpo: interleaved ours/TRL rounds (best of each kept)")
    p.add_argument("--prompts", type=int, default=4, help="generate: prompts")
    p.add_argument("--responses", type=int, default=4, help="generate: K responses per prompt")
    p.add_argument("--judgments", type=int, default=3, help="generate: N judgments per response")
    p.add_argument("--max-new-tokens", type=int, nargs=3, default=[96, 64, 48], metavar=("ACTOR", "JUDGE", "META"))
    p.add_argument("--gen-batch-sizes", type=int, nargs=3, default=[32, 96, 48], metavar=("ACTOR", "JUDGE", "META"))
    p.add_argument("--anchor-per-role", type=int, default=3, help="generate: anchor requests timed per role")
    p.add_argument("--backend", choices=("hf", "vllm", "both"), default="hf", help="generate: the generation backend")
    p.add_argument(
        "--in-flight", type=int, nargs="*", default=[], help="generate --backend vllm: also time these max_in_flight"
    )
    p.add_argument("--dtype", default="auto", help="dpo, generate: model.dtype of both sides (auto, float32, ...)")
    p.add_argument("--override", action="append", default=[], help="e2e: extra Hydra override (repeatable)")
    p.add_argument(
        "--scale-shape",
        type=int,
        nargs=3,
        default=[4, 512, 512],
        metavar=("PAIRS", "PROMPT", "COMPLETION"),
        help="scale: pairs per step, prompt and completion tokens",
    )
    p.add_argument("--steps", type=int, default=3, help="scale: timed steps per variant")
    p.add_argument("--no-checkpointing", action="store_true", help="scale: without gradient checkpointing")
    return p


def run_one(args: argparse.Namespace) -> dict:
    quick, model = args.quick, args.model or DEFAULT_MODEL
    if args.name == "dpo":
        from metareward.bench import dpo

        pairs, batch = (2, 2) if quick else (args.pairs, args.batch_size)
        return dpo.main(model, pairs, batch, args.json, 1 if quick else args.rounds, quick, args.dtype)
    if args.name == "generate":
        from metareward.bench import generate

        if quick:
            return generate.main(
                model, 1, 2, 2, (4, 4, 4), args.gen_batch_sizes, 1, args.json, args.backend, args.dtype
            )
        return generate.main(
            model,
            args.prompts,
            args.responses,
            args.judgments,
            args.max_new_tokens,
            args.gen_batch_sizes,
            args.anchor_per_role,
            args.json,
            args.backend,
            args.dtype,
            args.in_flight,
        )
    if args.name == "precision":
        from metareward.bench import precision

        if quick:
            return precision.main(model, args.json, 2, 2, 1, 16, 4, 2, 2, quick=True)
        return precision.main(model, args.json)
    if args.name == "lora-rate":
        from metareward.bench import lora_rate

        return lora_rate.main(model, args.json, 4, 2, quick=True) if quick else lora_rate.main(model, args.json)
    if args.name == "scale":
        from metareward.bench import scale

        shape = scale.StepShape(2, 8, 4) if quick else scale.StepShape(*args.scale_shape)
        return scale.main(quick, shape, 1 if quick else args.steps, not args.no_checkpointing, args.json)
    from metareward.bench import e2e

    extra = ([f"model.path={args.model}"] if args.model else []) + list(args.override)
    return e2e.main(e2e.QUICK if quick else e2e.DEMO, extra, args.json)


def run_all(argv: list[str], as_json: bool) -> dict:
    """Each benchmark in its own process (clean peak memory); their outputs pass through, then one combined line."""
    from metareward.bench.common import emit, machine

    results = {}
    for name in NAMES:
        rest = [a for a in argv if a != "all"]
        command = [sys.executable, "-m", "metareward.bench", name, "--json", *[a for a in rest if a != "--json"]]
        done = subprocess.run(command, check=False, stdout=subprocess.PIPE, text=True)
        lines = done.stdout.strip().splitlines()
        print("\n".join(lines[:-1]), flush=True)
        try:
            results[name] = json.loads(lines[-1]) if done.returncode == 0 and lines else {"error": done.returncode}
        except json.JSONDecodeError:
            results[name] = {"error": "no JSON line"}
        print(json.dumps(results[name], sort_keys=True), flush=True)
    summary = {
        "benchmark": "all",
        "results": results,
        "machine": machine(),
        "ratios": {name: r.get("ratio") for name, r in results.items() if "ratio" in r},
    }
    return emit(summary, as_json)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    from metareward.bench.allocator import keep_freed_memory
    from metareward.bench.common import set_threads
    from metareward.bench.scale import ScaleBenchError
    from metareward.run.termination import TERMINATED_EXIT_CODE, Terminated, sigterm_interrupts

    args = parser().parse_args(argv)
    set_threads(args.threads)
    keep_freed_memory()  # for both sides of every comparison: TRL's DPO step is 27-31% faster with it, ours the same
    if args.name == "all":
        result = run_all(argv, args.json)
        return 0 if all("error" not in r for r in result["results"].values()) else 1
    try:
        with sigterm_interrupts():  # SIGTERM takes Ctrl-C's path, so a vLLM server started here is stopped too
            run_one(args)
    except ScaleBenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(f"stopped: {interrupt or 'interrupted'}", file=sys.stderr)
        return TERMINATED_EXIT_CODE if isinstance(interrupt, Terminated) else INTERRUPTED_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main())

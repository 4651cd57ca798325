"""Answers of any iteration's actor for external benchmarks: alpaca_eval's `model_outputs` JSON (AlpacaEval 2) and
Arena-Hard-Auto's model-answer JSONL, written from a run directory's saved adapters (`python -m metareward.export`).

`prompts` reads the benchmark prompt files, `checkpoint` turns a run directory into iteration T's policy, `outputs`
writes the benchmark files, `job` checks the options and runs an export."""

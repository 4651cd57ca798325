"""Answers of any iteration's actor for external benchmarks: alpaca_eval's `model_outputs` JSON (AlpacaEval 2),
Arena-Hard-Auto's model-answer JSONL and FastChat's MT-Bench model-answer JSONL (both turns of every question),
written from a run directory's saved adapters (`python -m metareward.export`).

`prompts` reads the benchmark prompt files, `checkpoint` turns a run directory into iteration T's policy, `outputs`
writes the benchmark files, `job` checks the options and runs an export."""

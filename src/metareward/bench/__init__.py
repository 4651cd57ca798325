"""Benchmarks: `python -m metareward.bench <dpo|generate|e2e|scale|all> [--json] [--quick] [--model builtin:tiny]`.

- dpo: our reference pass + DPO steps (LoRA) against trl.DPOTrainer on the same model, pairs and settings;
- generate: the data engine's respond / judge / meta-judge phases against one batch-1 `generate` per request;
- e2e: one full iteration of `+experiment=meta_reward`, seconds per phase and peak RSS;
- scale (GPU): DPO step memory, throughput and MFU of a random Llama-3-8B-shaped model, LoRA and 4-bit QLoRA.
Each prints readable lines and, LAST, one JSON object with the figures and `ratio` (ours over the anchor,
higher is better; e2e has no anchor). `all` runs the first three in separate processes, echoes each one's JSON line,
and ends with one combined JSON line {"benchmark": "all", "results": {name: figures}, "ratios": {...}}.
"""

"""Benchmarks: `python -m metareward.bench <dpo|generate|e2e|precision|scale|all> [--json] [--quick] [--dtype D]`.

- dpo: our reference pass + DPO steps (LoRA) against trl.DPOTrainer on the same model, pairs and settings;
- generate: the data engine's respond / judge / meta-judge phases against one batch-1 `generate` per request;
- precision: what bfloat16 weights change against float32: score reads, the actor pairs they choose, DPO curves;
- e2e: one full iteration of `+experiment=meta_reward`, seconds per phase and peak RSS;
- scale (GPU): DPO step memory, throughput and MFU of a random Llama-3-8B-shaped model, LoRA and 4-bit QLoRA.
Each prints readable lines and, LAST, one JSON object with the figures and `ratio` (ours over the anchor,
higher is better; e2e has no anchor). dpo and generate run both sides in `--dtype` (auto: what model.dtype=auto
picks here), print the ratio against a float32 anchor beside it, and the share of this machine's measured
matrix-product peak in that dtype that ours reached (bench/peak.py). `all` runs the first three in separate processes, echoes each one's JSON line,
and ends with one combined JSON line {"benchmark": "all", "results": {name: figures}, "ratios": {...}}.
"""

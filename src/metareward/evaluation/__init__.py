"""Evaluation: win rates against a baseline (raw, length-controlled, Arena-style), judge quality, report plots.

`metrics` is pure (numpy/scipy/alpaca_eval); `evaluators` compare two answers; `runner` applies a model;
the Lightning callbacks live in `metareward.lightning.eval_callbacks`.
"""

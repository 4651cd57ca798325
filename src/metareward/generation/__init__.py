"""Batched text generation and next-token choice probabilities for the actor, judge and meta-judge roles.

`sampler.generate` runs our own KV-cached decoding loop with per-request seeds; `choice_probs` reads a judge's
score (or a meta-judge's winner) from the next-token distribution after a cue such as "Score: ".
"""

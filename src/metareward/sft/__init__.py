"""Warm start (iteration 0): supervised fine-tuning of the role adapters on instruction data (IFT) and
judge-training data (EFT), as the seed model M_0 -> M_1 step of Yuan et al. 2024 (arXiv 2401.10020, Sec. 2.1, 3.1).

`formatting` (pure) turns rows into (user message, completion) examples; `collate` batches them; `train` runs a
masked NLL on completion tokens over one adapter at a time; `warm_start` is the entry the run calls.
"""

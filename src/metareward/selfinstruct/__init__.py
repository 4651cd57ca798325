"""Self-instruct: growing the prompt pool with new prompts the model writes from few-shot examples.

Yuan et al. 2024 (arXiv 2401.10020, Sec. 2.3 and 3.1) grow their prompt pool this way; the filters follow
Wang et al. 2023 (Self-Instruct, arXiv 2212.10560, Sec. 2.2): ROUGE-L similarity to existing prompts, length
and keyword filters, and de-duplication. The pure pieces (`rouge`, `filters`, `fewshot`) know nothing of models;
`stage` wires them to the sampler.
"""
